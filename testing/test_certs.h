// Test certificates made in memory at test time with BoringSSL: a CA, server and client
// certificates signed by it, ECDSA P-256 or RSA 2048 keys, subject alternative names,
// and a short validity. Nothing long-lived is ever checked in.
//
//   TestCertificateAuthority ca = TestCertificateAuthority::Create();
//   TestCertificate server = ca.IssueServer("localhost");        // DNS:localhost, IP:127.0.0.1
//   TestCertificate client = ca.IssueClient("alice", TestKeyType::kRsa2048);
//   TlsCredentials creds = TlsCredentials::FromPem(server.chain_pem(), server.key_pem);
//
// Every function aborts the test binary on a BoringSSL failure: these are fixtures, and
// a broken fixture must not look like a passing test.
#ifndef ISLET_TESTING_TEST_CERTS_H_
#define ISLET_TESTING_TEST_CERTS_H_

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace islet {

enum class TestKeyType { kEcdsaP256, kRsa2048 };

struct TestCertificate {
  std::string cert_pem;          // the certificate alone
  std::string cert_der;          // the same, DER (what SocketInfo::peer_certificate holds)
  std::string issuer_pem;        // the CA certificate that signed it
  std::string key_pem;           // unencrypted PKCS#8
  std::string common_name;
  std::string serial;            // decimal, unique within the process

  // The certificate followed by its issuer: what a server presents.
  std::string chain_pem() const { return cert_pem + issuer_pem; }
};

struct TestIssueOptions {
  TestKeyType key_type = TestKeyType::kEcdsaP256;
  std::vector<std::string> dns_names;    // subjectAltName DNS entries
  std::vector<std::string> ip_addresses; // subjectAltName IP entries ("127.0.0.1")
  // Validity: [now + not_before_offset, now + not_before_offset + valid_for]. The
  // defaults give an hour of clock-skew slack and a day of life; a negative offset with
  // a short validity makes an expired certificate.
  absl::Duration not_before_offset = absl::Hours(-1);
  absl::Duration valid_for = absl::Hours(25);
};

class TestCertificateAuthority {
 public:
  static TestCertificateAuthority Create(TestKeyType key_type = TestKeyType::kEcdsaP256,
                                         const std::string& common_name = "Islet Test CA");

  // serverAuth certificate; with no names given: DNS:<common_name>, DNS:localhost and
  // IP:127.0.0.1.
  TestCertificate IssueServer(const std::string& common_name,
                              TestIssueOptions options = {}) const;
  // clientAuth certificate.
  TestCertificate IssueClient(const std::string& common_name,
                              TestIssueOptions options = {}) const;

  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& key_pem() const { return key_pem_; }

 private:
  TestCertificate Issue(const std::string& common_name, bool server,
                        const TestIssueOptions& options) const;

  std::string cert_pem_;
  std::string key_pem_;
};

// A fresh private key alone, unencrypted PKCS#8 PEM.
std::string GenerateTestKeyPem(TestKeyType key_type);

// `key_pem` re-encrypted with `password`: PKCS#8 with AES-256-CBC ("BEGIN ENCRYPTED
// PRIVATE KEY"), or with traditional_format the legacy OpenSSL form ("Proc-Type:
// 4,ENCRYPTED"; RSA and EC keys).
std::string EncryptTestKeyPem(const std::string& key_pem, const std::string& password,
                              bool traditional_format = false);

// The subject common name of a PEM or DER certificate ("" if it has none).
std::string CommonNameOfCertificate(const std::string& pem_or_der);

}  // namespace islet

#endif  // ISLET_TESTING_TEST_CERTS_H_
