// Internal to tls/: reading the certificates and keys that TlsOptions names, from files
// or from PEM text, into BoringSSL objects. Errors are InvalidArgument (NotFound or
// PermissionDenied for a file that cannot be read) and name the options field at
// fault: "credentials.private_key_file /etc/app/key.pem: ...".
#ifndef ISLET_TLS_PEM_H_
#define ISLET_TLS_PEM_H_

#include <openssl/base.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tls/tls_options.h"

namespace islet {
namespace tls_internal {

using X509Ptr = bssl::UniquePtr<X509>;

// One PEM input, with where it came from for messages: "credentials.private_key_file
// /x.pem" or "credentials.private_key_pem".
struct PemInput {
  std::string text;
  std::string source;
};

// Exactly one of `file` / `pem` must be set; `field` is the options path without the
// _file/_pem suffix ("credentials.certificate_chain"). A file must be a regular file of
// at most 4 MiB.
absl::StatusOr<PemInput> ReadPem(const std::string& file, const std::string& pem,
                                 const std::string& field);

// Every certificate in `input`, in order. InvalidArgument for a malformed block or none.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const PemInput& input);

struct LoadedCredentials {
  std::vector<X509Ptr> chain;  // leaf first
  bssl::UniquePtr<EVP_PKEY> key;
};

// Reads, parses and decrypts one certificate chain and its key, and checks that they
// match. `field` names the credentials in messages: "credentials" or
// "sni_credentials[\"api.example.com\"]".
absl::StatusOr<LoadedCredentials> LoadCredentials(const TlsCredentials& credentials,
                                                  const std::string& field);

}  // namespace tls_internal
}  // namespace islet

#endif  // ISLET_TLS_PEM_H_
