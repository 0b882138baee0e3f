// Prints a certificate's subject the way NiFi names a node (Java's
// getSubjectDN().getName(), RDNs last-first, ", " between them), then
// getSubjectX500Principal().getName() (RFC 2253).  Used by the tests of
// the shared-token RDN order (docs/protocols.md s2).
// usage: java SubjectOf CERT.pem
import java.io.FileInputStream;
import java.io.InputStream;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;

public class SubjectOf {
    @SuppressWarnings("deprecation")
    public static void main(String[] args) throws Exception {
        try (InputStream in = new FileInputStream(args[0])) {
            X509Certificate c = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
            System.out.println(c.getSubjectDN().getName());
            System.out.println(c.getSubjectX500Principal().getName());
        }
    }
}
