/**
 * `minimta doctor` as an operator runs it, against the real test DNS server
 * (tests/fakes/fake_dns.py): each DNS record a receiver checks — the host's
 * A record, forward-confirmed reverse DNS of the sending IP, SPF evaluated for
 * that IP, the DKIM key record against the configured private key, DMARC and
 * its alignment — is one line; a missing or wrong record fails with the record
 * to publish, and the exit code says whether everything passed.
 */
import assert from "node:assert/strict";
import { Mta, requireTool } from "./_harness.ts";
import { FakeDns, type Zone } from "./_dns.ts";
import { assertCliError, cli } from "./_cli.ts";
import { ADMIN, startWebMta, WebClient } from "./_http.ts";
import { generateDkimKey } from "../src/dkim/mod.ts";

const needsDns = requireTool("python3:dns");
const IP = "192.0.2.10";
const HOST = "mx.ours.test";
const SELECTOR = "srsa._domainkey.ours.test";

/** Everything a receiver wants to see for ours.test, except DMARC. */
function zoneWithoutDmarc(dkimTxt: string): Zone {
  return {
    [HOST]: { A: [IP] },
    "10.2.0.192.in-addr.arpa": { PTR: [HOST] },
    "ours.test": { TXT: [`v=spf1 ip4:${IP} -all`], MX: [[10, HOST]] },
    [SELECTOR]: { TXT: [dkimTxt] },
  };
}

function withDmarc(zone: Zone): Zone {
  return {
    ...zone,
    "_dmarc.ours.test": { TXT: ["v=DMARC1; p=quarantine; rua=mailto:d@ours.test"] },
  };
}

/** The report lines (`STATUS check subject: message`) whose status is FAIL. */
function failing(stdout: string): string[] {
  return stdout.split("\n").filter((l) => l.startsWith("FAIL"));
}

/** The check names of the failing lines. */
function failingChecks(stdout: string): string[] {
  return failing(stdout).map((l) => l.split(/\s+/)[1]);
}

Deno.test({
  name: "doctor: one line per DNS check, the record to publish when missing, exit 1 until all pass",
  ignore: needsDns,
  async fn(t) {
    await using mta = await Mta.start({ dkim: ["rsa"], noStart: true });
    const dkimTxt = mta.dkim[0].dnsTxt;
    await using dns = await FakeDns.start(zoneWithoutDmarc(dkimTxt));
    await mta.patchConfig({ delivery: { dns_servers: [dns.server], source_address: IP } });
    const doctor = (...args: string[]) => cli(mta, ["doctor", ...args]);

    await t.step(
      "A, PTR, SPF and DKIM published but no DMARC: exit 1, the DMARC record named",
      async () => {
        const r = await doctor();
        assertCliError(r, 1, "no DMARC");
        assert.deepEqual(failingChecks(r.stdout), ["dmarc"], r.stdout);
        const [line] = failing(r.stdout);
        assert.match(line, /ours\.test: no DMARC record/);
        assert.match(
          line,
          /publish: _dmarc\.ours\.test\. TXT "v=DMARC1; p=none; rua=mailto:[^"]+"/,
        );
        assert.match(r.stdout, /^PASS address +mx\.ours\.test: has 192\.0\.2\.10$/m);
        assert.match(r.stdout, /^PASS fcrdns +192\.0\.2\.10: PTR mx\.ours\.test resolves back/m);
        assert.match(r.stdout, /^PASS spf +ours\.test: "v=spf1 ip4:192\.0\.2\.10 -all" passes/m);
        assert.match(r.stdout, /^PASS dkim +srsa\._domainkey\.ours\.test: the published rsa key/m);
        assert.match(r.stdout, /^PASS alignment +ours\.test: .*d=ours\.test/m);
        assert.match(r.stdout, /^INFO mta-sts +ours\.test: none at _mta-sts\.ours\.test/m);
        assert.match(r.stdout, /^INFO tls-rpt +ours\.test: none at _smtp\._tls\.ours\.test/m);
      },
    );

    await t.step("with DMARC published: every check passes, exit 0", async () => {
      await dns.setZone(withDmarc(zoneWithoutDmarc(dkimTxt)));
      const r = await doctor();
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.equal(r.stderr, "");
      assert.deepEqual(failing(r.stdout), []);
      assert.match(r.stdout, /^PASS dmarc +ours\.test: policy p=quarantine/m);
    });

    await t.step(
      "a PTR that does not resolve back to server.hostname fails on its own line",
      async () => {
        const zone = withDmarc(zoneWithoutDmarc(dkimTxt));
        for (
          const broken of [
            { ...zone, "10.2.0.192.in-addr.arpa": { PTR: ["host-10.isp.test"] } },
            { ...zone, [HOST]: { A: ["192.0.2.99"] } },
            { ...zone, "10.2.0.192.in-addr.arpa": { A: ["192.0.2.1"] } },
          ]
        ) {
          await dns.setZone(broken);
          const r = await doctor();
          assertCliError(r, 1, "FCrDNS");
          assert.deepEqual(failingChecks(r.stdout), ["fcrdns"], r.stdout);
          assert.match(
            failing(r.stdout)[0],
            /publish: 10\.2\.0\.192\.in-addr\.arpa\. PTR mx\.ours\.test\.|publish: mx\.ours\.test\. A 192\.0\.2\.10/,
          );
        }
      },
    );

    await t.step(
      "an SPF record that fails for the sending IP fails with the fixed record",
      async () => {
        const zone = withDmarc(zoneWithoutDmarc(dkimTxt));
        await dns.setZone({ ...zone, "ours.test": { TXT: ["v=spf1 ip4:198.51.100.7 -all"] } });
        const r = await doctor();
        assertCliError(r, 1, "SPF fail");
        assert.deepEqual(failingChecks(r.stdout), ["spf"], r.stdout);
        assert.match(failing(r.stdout)[0], /ours\.test: fail for 192\.0\.2\.10/);
        assert.match(
          failing(r.stdout)[0],
          /publish: ours\.test\. TXT "v=spf1 ip4:198\.51\.100\.7 ip4:192\.0\.2\.10 -all"/,
        );
      },
    );

    await t.step(
      "a DKIM record of another key fails with the record of the configured key",
      async () => {
        const other = await generateDkimKey("rsa", { bits: 1024 });
        await dns.setZone(withDmarc(zoneWithoutDmarc(other.dnsTxt)));
        const r = await doctor();
        assertCliError(r, 1, "DKIM mismatch");
        assert.deepEqual(failingChecks(r.stdout), ["dkim"], r.stdout);
        const [line] = failing(r.stdout);
        assert.match(line, /the published key is not the public half of/);
        const published = /publish: srsa\._domainkey\.ours\.test\. TXT "([^"]+)"/.exec(line);
        assert.equal(published?.[1], dkimTxt, "the record to publish is the configured key's");
      },
    );

    await t.step(
      "--json: a parseable report with the same verdicts; --domain narrows it",
      async () => {
        await dns.setZone(zoneWithoutDmarc(dkimTxt));
        const r = await doctor("--json");
        assertCliError(r, 1, "--json");
        const report = JSON.parse(r.stdout);
        assert.equal(report.ok, false);
        assert.equal(report.hostname, HOST);
        assert.equal(report.sending_ip, IP);
        assert.deepEqual(report.domains, ["ours.test"]);
        const dmarc = report.checks.find((c: { check: string }) => c.check === "dmarc");
        assert.equal(dmarc.status, "fail");
        assert.match(dmarc.publish, /^_dmarc\.ours\.test\. TXT "v=DMARC1; /);
        assert.deepEqual(
          report.checks.filter((c: { status: string }) => c.status === "fail").map((
            c: { check: string },
          ) => c.check),
          ["dmarc"],
        );
        const other = JSON.parse((await doctor("--json", "--domain", "elsewhere.test")).stdout);
        assert.deepEqual(other.domains, ["elsewhere.test"]);
        const spf = other.checks.find((c: { check: string }) => c.check === "spf");
        assert.equal(spf.status, "fail");
        assert.equal(spf.publish, `elsewhere.test. TXT "v=spf1 ip4:${IP} -all"`);
      },
    );
  },
});

/**
 * The status page's rows as report lines: the table's cells unescaped,
 * joined the way the CLI prints them (`STATUS check subject: message — publish: …`),
 * whitespace collapsed.
 */
function pageLines(body: string): string[] {
  const table = body.slice(body.indexOf("<th>status</th>"));
  const unescape = (s: string) =>
    s.replace(/<[^>]*>/g, "").replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)))
      .trim();
  return [...table.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => {
    const [status, check, subject, message, publish] = [
      ...row[1].matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g),
    ].map((m) => unescape(m[1]));
    return squash(
      `${status} ${check} ${subject}: ${message}${publish ? ` — publish: ${publish}` : ""}`,
    );
  });
}

/** The CLI's report lines, whitespace collapsed (the CLI pads the check names). */
function cliLines(stdout: string): string[] {
  return stdout.split("\n").filter((l) => /^(PASS|FAIL|INFO) /.test(l)).map(squash);
}

function squash(line: string): string {
  return line.replace(/\s+/g, " ");
}

Deno.test({
  name: "doctor page: GET /doctor shows the CLI's lines, cached until Check again, escaped",
  ignore: needsDns,
  async fn(t) {
    await using mta = await startWebMta({ dkim: ["rsa"], noStart: true });
    const dkimTxt = mta.dkim[0].dnsTxt;
    await using dns = await FakeDns.start(zoneWithoutDmarc(dkimTxt));
    await mta.patchConfig({ delivery: { dns_servers: [dns.server], source_address: IP } });
    await mta.launch();
    const web = await WebClient.forMta(mta);
    const doctorPage = async () => {
      const r = await web.page("/doctor");
      assert.equal(r.status, 200, r.body);
      return r.body;
    };
    const checkAgain = async () => {
      const res = await web.post("/doctor", { csrf: await web.csrf() });
      await res.body?.cancel();
      assert.equal(res.status, 303);
      assert.equal(res.headers.get("location"), "/doctor");
    };

    await t.step("needs a login", async () => {
      const res = await web.get("/doctor");
      await res.body?.cancel();
      assert.equal(res.status, 303);
      assert.equal(res.headers.get("location"), "/login");
      assert.equal((await web.login(ADMIN.user, ADMIN.pass)).status, 303);
      assert.match((await web.page("/")).body, /<a href="\/doctor">DNS doctor<\/a>/);
    });

    await t.step("no DMARC: the page shows the same FAIL line as the CLI", async () => {
      const cliRun = await doctor(mta);
      assertCliError(cliRun, 1, "no DMARC");
      const body = await doctorPage();
      const lines = pageLines(body);
      assert.deepEqual(lines, cliLines(cliRun.stdout));
      const [fail] = lines.filter((l) => l.startsWith("FAIL"));
      assert.equal(fail, squash(failing(cliRun.stdout)[0]));
      assert.match(
        fail,
        /^FAIL dmarc ours\.test: no DMARC record .* — publish: _dmarc\.ours\.test\. TXT/,
      );
      assert.match(body, /1 of 6 checks failed/);
    });

    await t.step("DMARC published: cached on reload, PASS after Check again", async () => {
      await dns.setZone(withDmarc(zoneWithoutDmarc(dkimTxt)));
      assert.ok(
        pageLines(await doctorPage()).some((l) => l.startsWith("FAIL dmarc")),
        "a reload within the minute shows the cached report",
      );
      await checkAgain();
      const cliRun = await doctor(mta);
      assert.equal(cliRun.code, 0, cliRun.stderr + cliRun.stdout);
      const body = await doctorPage();
      const lines = pageLines(body);
      assert.deepEqual(lines, cliLines(cliRun.stdout));
      assert.ok(lines.some((l) => /^PASS dmarc ours\.test: policy p=quarantine/.test(l)), body);
      assert.deepEqual(lines.filter((l) => l.startsWith("FAIL")), []);
      assert.match(body, /All 6 checks pass/);
    });

    await t.step("a TXT record with <script> in it is shown escaped", async () => {
      const sts = "v=STSv1; id=<script>alert(1)</script>";
      await dns.setZone({
        ...withDmarc(zoneWithoutDmarc(dkimTxt)),
        "_mta-sts.ours.test": { TXT: [sts] },
      });
      await checkAgain();
      const body = await doctorPage();
      assert.doesNotMatch(body, /<script/i);
      assert.match(body, /id=&#60;script&#62;alert\(1\)&#60;\/script&#62;/);
      const cliRun = await doctor(mta);
      assert.deepEqual(pageLines(body), cliLines(cliRun.stdout));
      assert.ok(pageLines(body).includes(`INFO mta-sts ours.test: "${sts}" at _mta-sts.ours.test`));
    });
  },
});

function doctor(mta: Mta) {
  return cli(mta, ["doctor"]);
}
