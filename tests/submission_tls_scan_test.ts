/**
 * TESTPLAN TLS-S-08: what the two submission ports accept, as a scanner
 * sees it. `openssl s_client -msg` offers old protocol versions and weak
 * cipher suites one at a time; nmap's ssl-enum-ciphers (its own TLS code,
 * so it can offer the EXPORT and RC4 suites that Debian's OpenSSL 3 no
 * longer has) lists every protocol and suite each port accepts.
 */
import assert from "node:assert/strict";
import { Mta, requireTool } from "./_harness.ts";

/** One `openssl s_client -msg` handshake, as the client saw it. */
interface Handshake {
  /** The version in the ClientHello s_client sent ("TLS 1.0"), or null when it sent none. */
  clientHello: string | null;
  /** True when the server answered with a ServerHello. */
  serverHello: boolean;
  /** The cipher suite agreed, or null when the handshake failed. */
  cipher: string | null;
  output: string;
}

async function handshake(port: number, starttls: boolean, args: string[]): Promise<Handshake> {
  const child = new Deno.Command("openssl", {
    args: [
      ...["s_client", "-msg", "-connect", `127.0.0.1:${port}`, "-servername", "localhost"],
      ...(starttls ? ["-starttls", "smtp"] : []),
      ...args,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).spawn();
  const writer = child.stdin.getWriter();
  // "Q" quits once the handshake is done; a failed handshake ends s_client anyway.
  await writer.write(new TextEncoder().encode("Q\n")).catch(() => {});
  await writer.close().catch(() => {});
  const out = await child.output();
  const output = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const hello = /^>>> (TLS [\d.]+|SSL 3\.0), Handshake \[length [0-9a-f]+\], ClientHello$/m
    .exec(output);
  // In "New, TLSv1.2, Cipher is X" the version is the cipher's, not the session's.
  const cipher = /^New, \S+, Cipher is (\S+)$/m.exec(output)?.[1] ?? "(NONE)";
  return {
    clientHello: hello?.[1] ?? null,
    serverHello: /^<<< .*, ServerHello$/m.test(output),
    cipher: cipher === "(NONE)" ? null : cipher,
    output,
  };
}

/** True when the local OpenSSL can offer `ciphers` over TLS 1.2 at all. */
async function clientCanOffer(ciphers: string): Promise<boolean> {
  const out = await new Deno.Command("openssl", {
    args: ["ciphers", "-s", "-tls1_2", ciphers],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

/** What nmap's ssl-enum-ciphers found on one port. */
interface Scan {
  protocols: string[];
  ciphers: { name: string; strength: string }[];
  xml: string;
}

/**
 * `nmap --script ssl-enum-ciphers` on one port. The script does STARTTLS
 * only on ports it knows as SMTP (25, 587, or a service named "smtp"), so a
 * throw-away nmap-services file names the test's random port; with
 * `--datadir` nmap reads that file first and its own for the rest.
 */
async function nmapScan(port: number, service: "smtp" | "smtps", dir: string): Promise<Scan> {
  const dataDir = await Deno.makeTempDir({ dir, prefix: "nmap-" });
  await Deno.writeTextFile(`${dataDir}/nmap-services`, `${service}\t${port}/tcp\t0.5\n`);
  const out = await new Deno.Command("nmap", {
    args: [
      ...["-sT", "-Pn", "-n", "--datadir", dataDir, "-p", String(port)],
      ...["--script", "ssl-enum-ciphers", "-oX", "-", "127.0.0.1"],
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const xml = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `nmap failed: ${new TextDecoder().decode(out.stderr)}`);
  const script = /<script id="ssl-enum-ciphers"[^]*?<\/script>/.exec(xml)?.[0];
  assert.ok(script, `ssl-enum-ciphers did not run on ${service} port ${port}:\n${xml}`);
  const protocols = [...script.matchAll(/<table key="((?:SSL|TLS)v[\d.]+)">/g)].map((m) => m[1]);
  const ciphers = [...script.matchAll(/<table>\s*([^]*?)<\/table>/g)].flatMap((m) => {
    const name = /<elem key="name">([^<]+)<\/elem>/.exec(m[1])?.[1];
    const strength = /<elem key="strength">([^<]+)<\/elem>/.exec(m[1])?.[1] ?? "?";
    return name ? [{ name, strength }] : [];
  });
  return { protocols, ciphers, xml: script };
}

// RFC 8996 retires TLS 1.0 and 1.1; RFC 8314 §4.1 asks for TLS 1.2 or later
// on submission. OpenSSL's default security level already refuses TLS < 1.2
// and NULL ciphers on the client side, so every probe lowers it to 0: a
// refusal seen here is the server's, after a ClientHello that really went out.
const WEAK_CIPHERS = ["eNULL", "aNULL", "EXPORT", "LOW", "RC4", "DES", "3DES", "MD5"];
const WEAK_NAME = /NULL|anon|EXPORT|RC4|RC2|_DES_|DES40|3DES|IDEA|MD5/;

Deno.test({
  name:
    "TLS-S-08: both submission ports speak only TLS 1.2 and 1.3, with no NULL, EXPORT or RC4 cipher",
  ignore: requireTool("openssl", "nmap"),
  async fn(t) {
    await using mta = await Mta.start();
    const ports = [
      { label: "STARTTLS port", port: mta.port, starttls: true, service: "smtp" as const },
      { label: "implicit-TLS port", port: mta.tlsPort, starttls: false, service: "smtps" as const },
    ];
    for (const { label, port, starttls, service } of ports) {
      await t.step(`${label}: TLS 1.2 and 1.3 work with the probes' client settings`, async () => {
        for (const args of [["-tls1_2", "-cipher", "DEFAULT@SECLEVEL=0"], ["-tls1_3"]]) {
          const h = await handshake(port, starttls, args);
          assert.ok(h.serverHello && h.cipher, `${args[0]} refused:\n${h.output}`);
        }
      });

      await t.step(`${label}: the server refuses TLS 1.0 and TLS 1.1`, async () => {
        for (const [flag, version] of [["-tls1", "TLS 1.0"], ["-tls1_1", "TLS 1.1"]]) {
          const h = await handshake(port, starttls, [flag, "-cipher", "DEFAULT@SECLEVEL=0"]);
          assert.equal(h.clientHello, version, `s_client did not offer ${version}:\n${h.output}`);
          assert.ok(!h.serverHello && !h.cipher, `${version} accepted:\n${h.output}`);
        }
      });

      await t.step(`${label}: weak suites offered alone over TLS 1.2 are refused`, async () => {
        let offered = 0;
        for (const weak of WEAK_CIPHERS) {
          const ciphers = `${weak}:@SECLEVEL=0`;
          // Debian's OpenSSL 3 cannot offer EXPORT, RC4 or DES at all: nmap covers those.
          if (!(await clientCanOffer(ciphers))) continue;
          offered++;
          const h = await handshake(port, starttls, ["-tls1_2", "-cipher", ciphers]);
          assert.equal(h.clientHello, "TLS 1.2", `${weak}: no ClientHello sent:\n${h.output}`);
          assert.ok(!h.serverHello && !h.cipher, `${weak}: ${h.cipher} accepted:\n${h.output}`);
        }
        assert.ok(offered >= 2, "the local OpenSSL offered neither NULL nor anonymous suites");
      });

      await t.step(`${label}: nmap finds only TLS 1.2/1.3 and strong suites`, async () => {
        const scan = await nmapScan(port, service, mta.dir);
        assert.ok(scan.protocols.includes("TLSv1.2"), scan.xml);
        const old = scan.protocols.filter((p) => p !== "TLSv1.2" && p !== "TLSv1.3");
        assert.deepEqual(old, [], scan.xml);
        assert.ok(scan.ciphers.length > 0, scan.xml);
        assert.deepEqual(scan.ciphers.filter((c) => WEAK_NAME.test(c.name)), [], scan.xml);
        // nmap grades each suite from A (best) to F; C and worse are weak.
        const graded = scan.ciphers.filter((c) => c.strength !== "A" && c.strength !== "B");
        assert.deepEqual(graded, [], scan.xml);
      });
    }

    await t.step("a scan is no fault of the daemon: nothing is logged at ERROR level", () => {
      const errors = mta.logs().filter((e) => e.level === "ERROR");
      assert.deepEqual(errors.map((e) => JSON.stringify(e)), []);
    });
    assert.equal(await mta.stop(), 0);
  },
});
