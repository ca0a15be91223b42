#include "tls/pem.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tls/ssl_errors.h"
#include "transport/errors.h"
#include "transport/regular_file.h"

namespace islet {
namespace tls_internal {
namespace {

// PEM files are small; anything bigger is a mistake (or /dev/zero).
constexpr size_t kMaxPemFile = 4 << 20;

// The whole of a PEM file; `field` names it in messages ("client_ca_file").
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, const std::string& field) {
  absl::StatusOr<RegularFile> file = OpenRegularFile(path, field);
  if (!file.ok()) return file.status();
  const std::string what = absl::StrCat(field, " ", path);
  if (file->size > kMaxPemFile) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", file->size, " bytes is too big for a PEM file"));
  }
  std::string out(static_cast<size_t>(file->size), '\0');
  size_t have = 0;
  while (have < out.size()) {
    const ssize_t n = ::read(file->fd.get(), out.data() + have, out.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PosixError(errno, what);
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  out.resize(have);
  return out;
}

bool IsEndOfPem(uint32_t error) {
  return ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
}

int PasswordCallback(char* buf, int size, int rwflag, void* userdata) {
  const auto* password = static_cast<const std::string*>(userdata);
  if (password == nullptr || password->empty() || password->size() > static_cast<size_t>(size)) {
    return 0;
  }
  std::memcpy(buf, password->data(), password->size());
  return static_cast<int>(password->size());
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> ParsePrivateKey(const PemInput& input,
                                                         const std::string& password,
                                                         const std::string& field) {
  // PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") and the traditional form ("Proc-Type:
  // 4,ENCRYPTED") both say so in the clear.
  const bool encrypted = absl::StrContains(input.text, "ENCRYPTED");
  if (encrypted && password.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        input.source, ": the private key is encrypted and no ", field,
        "_password was given"));
  }
  bssl::UniquePtr<BIO> bio(
      BIO_new_mem_buf(input.text.data(), static_cast<int>(input.text.size())));
  if (!bio) return absl::ResourceExhaustedError("tls: out of memory");
  ERR_clear_error();
  std::string pass = password;
  bssl::UniquePtr<EVP_PKEY> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, PasswordCallback, &pass));
  if (key) {
    ERR_clear_error();
    return key;
  }
  const uint32_t error = ERR_peek_last_error();
  const std::string reason = ConsumeSslErrorReason();
  if (IsEndOfPem(error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        input.source, ": no private key found (expected -----BEGIN PRIVATE KEY----- or "
                      "a traditional RSA/EC key)"));
  }
  if (encrypted) {
    return absl::InvalidArgumentError(absl::StrCat(input.source,
                                                   ": cannot decrypt the private key: wrong ",
                                                   field, "_password? (", reason, ")"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(input.source, ": the private key is not valid PEM (", reason, ")"));
}

std::string SubjectOf(X509* cert) {
  char buf[256] = {};
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf));
  return buf;
}

}  // namespace

absl::StatusOr<PemInput> ReadPem(const std::string& file, const std::string& pem,
                                 const std::string& field) {
  if (!file.empty() && !pem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": set ", field, "_file or ", field, "_pem, not both"));
  }
  if (file.empty() && pem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": missing (set ", field, "_file or ", field, "_pem)"));
  }
  if (!pem.empty()) return PemInput{pem, absl::StrCat(field, "_pem")};
  absl::StatusOr<std::string> text = ReadSmallFile(file, absl::StrCat(field, "_file"));
  if (!text.ok()) return text.status();
  return PemInput{*std::move(text), absl::StrCat(field, "_file ", file)};
}

absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const PemInput& input) {
  bssl::UniquePtr<BIO> bio(
      BIO_new_mem_buf(input.text.data(), static_cast<int>(input.text.size())));
  if (!bio) return absl::ResourceExhaustedError("tls: out of memory");
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert) {
      certs.push_back(std::move(cert));
      continue;
    }
    const uint32_t error = ERR_peek_last_error();
    if (IsEndOfPem(error)) {
      ERR_clear_error();
      break;
    }
    const std::string reason = ConsumeSslErrorReason();
    return absl::InvalidArgumentError(absl::StrCat(
        input.source, ": certificate ", certs.size() + 1, " is not valid PEM/X.509 (",
        reason.empty() ? "unknown error" : reason, ")"));
  }
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        input.source, ": no certificate found (expected -----BEGIN CERTIFICATE-----)"));
  }
  return certs;
}

absl::StatusOr<LoadedCredentials> LoadCredentials(const TlsCredentials& credentials,
                                                  const std::string& field) {
  absl::StatusOr<PemInput> chain_pem =
      ReadPem(credentials.certificate_chain_file, credentials.certificate_chain_pem,
              absl::StrCat(field, ".certificate_chain"));
  if (!chain_pem.ok()) return chain_pem.status();
  absl::StatusOr<PemInput> key_pem = ReadPem(
      credentials.private_key_file, credentials.private_key_pem, absl::StrCat(field, ".private_key"));
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::vector<X509Ptr>> chain = ParseCertificates(*chain_pem);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key =
      ParsePrivateKey(*key_pem, credentials.private_key_password, absl::StrCat(field, ".private_key"));
  if (!key.ok()) return key.status();
  X509* leaf = (*chain)[0].get();
  ERR_clear_error();
  if (X509_check_private_key(leaf, key->get()) != 1) {
    const std::string reason = ConsumeSslErrorReason();
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": the private key does not match the certificate ", SubjectOf(leaf), " (",
        key_pem->source, " vs ", chain_pem->source, "; ", reason, ")"));
  }
  return LoadedCredentials{*std::move(chain), *std::move(key)};
}

}  // namespace tls_internal
}  // namespace islet
