/** Test certificates made with openssl: a CA, a leaf it signed, and a self-signed one. */
import { run } from "./_harness.ts";

/** A test CA and a leaf certificate it signed for `hostName`, plus a self-signed one. */
export interface TestCerts {
  caCert: string;
  leafCert: string;
  leafKey: string;
  selfCert: string;
  selfKey: string;
}

/** Makes a CA, a leaf for `hostName` signed by it, and a self-signed cert, with openssl. */
export async function makeCerts(dir: string, hostName: string): Promise<TestCerts> {
  const o = (args: string[]) =>
    run("openssl", args).then((r) => {
      if (r.code !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
    });
  const p = (name: string) => `${dir}/${name}`;
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await o([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.pem"),
    "-days",
    "2",
    "-subj",
    "/CN=minimta test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await o([
    "req",
    ...ec,
    "-keyout",
    p("leaf.key"),
    "-out",
    p("leaf.csr"),
    "-subj",
    `/CN=${hostName}`,
  ]);
  await Deno.writeTextFile(
    p("leaf.ext"),
    `subjectAltName=DNS:${hostName}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`,
  );
  await o([
    "x509",
    "-req",
    "-in",
    p("leaf.csr"),
    "-CA",
    p("ca.pem"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-out",
    p("leaf.pem"),
    "-days",
    "2",
    "-extfile",
    p("leaf.ext"),
  ]);
  await o([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("self.key"),
    "-out",
    p("self.pem"),
    "-days",
    "2",
    "-subj",
    `/CN=${hostName}`,
    "-addext",
    `subjectAltName=DNS:${hostName}`,
  ]);
  return {
    caCert: p("ca.pem"),
    leafCert: p("leaf.pem"),
    leafKey: p("leaf.key"),
    selfCert: p("self.pem"),
    selfKey: p("self.key"),
  };
}
