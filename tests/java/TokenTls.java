// A Java HTTPS client with its key in a PKCS#11 token, the way a NiFi
// node or any JSSE program uses what p11cert writes: the SunPKCS11
// provider configured from CFG (pkcs11.cfg), KeyStore type PKCS11 loaded
// with the PIN, the CA from the PKCS#12 truststore TS (no password), and
// one GET of URL over mutual TLS.  The PIN is read from PINFILE, or from
// stdin when PINFILE is "-": never from argv.
// Prints "alias ALIAS SUBJECT" for each key entry, then "status N" and the
// body.  usage: java TokenTls CFG TS URL PINFILE|-
import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.FileReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.net.URL;
import java.security.KeyStore;
import java.security.Provider;
import java.security.Security;
import java.security.cert.X509Certificate;
import java.util.Arrays;
import java.util.Collections;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class TokenTls {
    static char[] readPin(String src) throws Exception {
        Reader r = src.equals("-") ? new InputStreamReader(System.in) : new FileReader(src);
        try (BufferedReader br = new BufferedReader(r)) {
            String line = br.readLine();
            if (line == null)
                throw new IllegalArgumentException("no PIN in " + src);
            return line.toCharArray();
        }
    }

    public static void main(String[] args) throws Exception {
        Provider p = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(p);
        char[] pin = readPin(args[3]);
        KeyStore ks = KeyStore.getInstance("PKCS11", p);
        ks.load(null, pin);
        for (String a : Collections.list(ks.aliases()))
            if (ks.isKeyEntry(a))
                System.out.println("alias " + a + " " +
                    ((X509Certificate) ks.getCertificate(a)).getSubjectX500Principal().getName());
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509");
        kmf.init(ks, pin);
        Arrays.fill(pin, '\0');
        KeyStore ts = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(args[1])) {
            ts.load(in, null);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        HttpsURLConnection c = (HttpsURLConnection) new URL(args[2]).openConnection();
        c.setSSLSocketFactory(ctx.getSocketFactory());
        c.setConnectTimeout(20000);
        c.setReadTimeout(20000);
        System.out.println("status " + c.getResponseCode());
        try (BufferedReader br = new BufferedReader(new InputStreamReader(c.getInputStream()))) {
            for (String l; (l = br.readLine()) != null; )
                System.out.println(l);
        }
    }
}
