#include "testing/test_certs.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace islet {
namespace {

[[noreturn]] void Die(const char* what) {
  char reason[256] = "no BoringSSL error";
  if (uint32_t e = ERR_get_error(); e != 0) ERR_error_string_n(e, reason, sizeof(reason));
  std::fprintf(stderr, "test_certs: %s failed: %s\n", what, reason);
  std::abort();
}

#define CERT_CHECK(cond) \
  do {                   \
    if (!(cond)) Die(#cond); \
  } while (0)

std::string BioContents(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t length = 0;
  CERT_CHECK(BIO_mem_contents(bio, &data, &length));
  return std::string(reinterpret_cast<const char*>(data), length);
}

bssl::UniquePtr<EVP_PKEY> GenerateKey(TestKeyType type) {
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  CERT_CHECK(key);
  if (type == TestKeyType::kEcdsaP256) {
    bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
    CERT_CHECK(ec && EC_KEY_generate_key(ec.get()));
    CERT_CHECK(EVP_PKEY_assign_EC_KEY(key.get(), ec.release()));
  } else {
    bssl::UniquePtr<RSA> rsa(RSA_new());
    bssl::UniquePtr<BIGNUM> e(BN_new());
    CERT_CHECK(rsa && e && BN_set_word(e.get(), RSA_F4));
    CERT_CHECK(RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr));
    CERT_CHECK(EVP_PKEY_assign_RSA(key.get(), rsa.release()));
  }
  return key;
}

std::string KeyToPem(EVP_PKEY* key) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  CERT_CHECK(PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                                           nullptr));
  return BioContents(bio.get());
}

bssl::UniquePtr<EVP_PKEY> KeyFromPem(const std::string& pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  CERT_CHECK(key);
  return key;
}

bssl::UniquePtr<X509> CertFromPem(const std::string& pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  CERT_CHECK(cert);
  return cert;
}

std::string CertToPem(X509* cert) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  CERT_CHECK(PEM_write_bio_X509(bio.get(), cert));
  return BioContents(bio.get());
}

std::string CertToDer(X509* cert) {
  uint8_t* der = nullptr;
  const int length = i2d_X509(cert, &der);
  CERT_CHECK(length > 0);
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(length));
  OPENSSL_free(der);
  return out;
}

void AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  CERT_CHECK(ext);
  CERT_CHECK(X509_add_ext(cert, ext.get(), -1));
}

uint64_t NextSerial() {
  static std::atomic<uint64_t> counter{1};
  uint32_t random = 0;
  RAND_bytes(reinterpret_cast<uint8_t*>(&random), sizeof(random));
  // Random high bits keep serials from different test processes apart; the counter
  // keeps them unique within one.
  return (static_cast<uint64_t>(random & 0x7fffff) << 24) | counter.fetch_add(1);
}

// Builds and signs a certificate for `key` named `common_name`. With `issuer` null it is
// self-signed by `key` (the CA).
bssl::UniquePtr<X509> MakeCertificate(const std::string& common_name, EVP_PKEY* key,
                                      X509* issuer, EVP_PKEY* issuer_key, uint64_t serial,
                                      absl::Duration not_before_offset,
                                      absl::Duration valid_for) {
  bssl::UniquePtr<X509> cert(X509_new());
  CERT_CHECK(cert);
  CERT_CHECK(X509_set_version(cert.get(), X509_VERSION_3));
  CERT_CHECK(ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial));
  bssl::UniquePtr<X509_NAME> name(X509_NAME_new());
  CERT_CHECK(X509_NAME_add_entry_by_txt(
      name.get(), "O", MBSTRING_UTF8, reinterpret_cast<const uint8_t*>("Islet tests"), -1,
      -1, 0));
  CERT_CHECK(X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                        reinterpret_cast<const uint8_t*>(common_name.c_str()),
                                        -1, -1, 0));
  CERT_CHECK(X509_set_subject_name(cert.get(), name.get()));
  CERT_CHECK(X509_set_issuer_name(
      cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name.get()));
  const time_t now = std::time(nullptr);
  const time_t from = now + absl::ToInt64Seconds(not_before_offset);
  const time_t until = from + absl::ToInt64Seconds(valid_for);
  CERT_CHECK(ASN1_TIME_set(X509_getm_notBefore(cert.get()), from));
  CERT_CHECK(ASN1_TIME_set(X509_getm_notAfter(cert.get()), until));
  CERT_CHECK(X509_set_pubkey(cert.get(), key));
  return cert;
}

}  // namespace

TestCertificateAuthority TestCertificateAuthority::Create(TestKeyType key_type,
                                                          const std::string& common_name) {
  bssl::UniquePtr<EVP_PKEY> key = GenerateKey(key_type);
  bssl::UniquePtr<X509> cert =
      MakeCertificate(common_name, key.get(), nullptr, nullptr, NextSerial(),
                      absl::Hours(-1), absl::Hours(25));
  AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  CERT_CHECK(X509_sign(cert.get(), key.get(), EVP_sha256()));
  TestCertificateAuthority ca;
  ca.cert_pem_ = CertToPem(cert.get());
  ca.key_pem_ = KeyToPem(key.get());
  return ca;
}

TestCertificate TestCertificateAuthority::IssueServer(const std::string& common_name,
                                                      TestIssueOptions options) const {
  if (options.dns_names.empty() && options.ip_addresses.empty()) {
    options.dns_names = {common_name, "localhost"};
    options.ip_addresses = {"127.0.0.1"};
  }
  return Issue(common_name, /*server=*/true, options);
}

TestCertificate TestCertificateAuthority::IssueClient(const std::string& common_name,
                                                      TestIssueOptions options) const {
  return Issue(common_name, /*server=*/false, options);
}

TestCertificate TestCertificateAuthority::Issue(const std::string& common_name, bool server,
                                                const TestIssueOptions& options) const {
  bssl::UniquePtr<X509> ca_cert = CertFromPem(cert_pem_);
  bssl::UniquePtr<EVP_PKEY> ca_key = KeyFromPem(key_pem_);
  bssl::UniquePtr<EVP_PKEY> key = GenerateKey(options.key_type);
  const uint64_t serial = NextSerial();
  bssl::UniquePtr<X509> cert =
      MakeCertificate(common_name, key.get(), ca_cert.get(), ca_key.get(), serial,
                      options.not_before_offset, options.valid_for);
  AddExtension(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(cert.get(), ca_cert.get(), NID_key_usage,
               options.key_type == TestKeyType::kRsa2048
                   ? "critical,digitalSignature,keyEncipherment"
                   : "critical,digitalSignature");
  AddExtension(cert.get(), ca_cert.get(), NID_ext_key_usage,
               server ? "serverAuth" : "clientAuth");
  std::vector<std::string> names;
  for (const std::string& dns : options.dns_names) names.push_back("DNS:" + dns);
  for (const std::string& ip : options.ip_addresses) names.push_back("IP:" + ip);
  if (!names.empty()) {
    AddExtension(cert.get(), ca_cert.get(), NID_subject_alt_name, absl::StrJoin(names, ","));
  }
  AddExtension(cert.get(), ca_cert.get(), NID_subject_key_identifier, "hash");
  AddExtension(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always");
  CERT_CHECK(X509_sign(cert.get(), ca_key.get(), EVP_sha256()));

  TestCertificate out;
  out.cert_pem = CertToPem(cert.get());
  out.cert_der = CertToDer(cert.get());
  out.issuer_pem = cert_pem_;
  out.key_pem = KeyToPem(key.get());
  out.common_name = common_name;
  out.serial = absl::StrCat(serial);
  return out;
}

std::string GenerateTestKeyPem(TestKeyType key_type) {
  bssl::UniquePtr<EVP_PKEY> key = GenerateKey(key_type);
  return KeyToPem(key.get());
}

std::string EncryptTestKeyPem(const std::string& key_pem, const std::string& password,
                              bool traditional_format) {
  bssl::UniquePtr<EVP_PKEY> key = KeyFromPem(key_pem);
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  std::string pass = password;  // the PEM writers take a mutable buffer
  auto* pass_bytes = reinterpret_cast<unsigned char*>(pass.data());
  if (!traditional_format) {
    CERT_CHECK(PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), EVP_aes_256_cbc(),
                                             pass.data(), static_cast<int>(pass.size()), nullptr,
                                             nullptr));
  } else if (EVP_PKEY_id(key.get()) == EVP_PKEY_RSA) {
    CERT_CHECK(PEM_write_bio_RSAPrivateKey(
        bio.get(), EVP_PKEY_get0_RSA(key.get()), EVP_aes_256_cbc(), pass_bytes,
        static_cast<int>(pass.size()), nullptr, nullptr));
  } else {
    CERT_CHECK(PEM_write_bio_ECPrivateKey(
        bio.get(), EVP_PKEY_get0_EC_KEY(key.get()), EVP_aes_256_cbc(), pass_bytes,
        static_cast<int>(pass.size()), nullptr, nullptr));
  }
  return BioContents(bio.get());
}

std::string CommonNameOfCertificate(const std::string& pem_or_der) {
  bssl::UniquePtr<X509> cert;
  if (pem_or_der.find("-----BEGIN") != std::string::npos) {
    cert = CertFromPem(pem_or_der);
  } else {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(pem_or_der.data());
    cert.reset(d2i_X509(nullptr, &p, static_cast<long>(pem_or_der.size())));
    if (!cert) return "";
  }
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn,
                                sizeof(cn)) < 0) {
    return "";
  }
  return cn;
}

}  // namespace islet
