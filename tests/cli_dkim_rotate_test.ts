/**
 * `minimta dkim rotate` as an operator runs it against a running daemon: a
 * new key under a new selector, and mail keeps being signed with the old one
 * until the new TXT record is visible in (fake) DNS; then the daemon switches
 * by itself, and `dkim list` still reports the old record as needed for a
 * week. `--activate` switches at once; the config file keeps its comments.
 * Signatures are checked by an independent verifier (python3-dkim).
 */
import assert from "node:assert/strict";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { delay, FAKES, freePorts, Mta, PYTHON, requireTool, run, waitFor } from "./_harness.ts";
import { deliveryConfig, submit } from "./_delivery.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { unstuff } from "./_mime.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";
import { assertCliError, cli, cliOk } from "./_cli.ts";

const needs = requireTool("python3:dkim", "python3:dns");

/** The selector and TXT value `dkim rotate` printed. */
function printedRecord(out: string): { selector: string; txt: string } {
  const match = /^(\S+)\._domainkey\.ours\.test\. IN TXT \(([^)]*)\)/m.exec(out);
  assert.ok(match, `no TXT record in:\n${out}`);
  return {
    selector: match[1],
    txt: [...match[2].matchAll(/"([^"]*)"/g)].map((m) => m[1]).join(""),
  };
}

/** The s= of each signature and whether python3-dkim verified it with `records` as DNS. */
async function verify(bytes: Uint8Array, records: Record<string, string>) {
  const txt = Object.entries(records).flatMap((
    [s, v],
  ) => ["--txt", `${s}._domainkey.ours.test=${v}`]);
  const r = await run(PYTHON, [`${FAKES}/dkim_verify.py`, "-", ...txt], { stdin: bytes });
  return r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => {
    const result = JSON.parse(l);
    return { s: result.s, ok: result.ok };
  });
}

interface Listing {
  domain: string;
  signing: { selector: string };
  pending: { selector: string } | null;
  retired: { selector: string; until: string; needed: boolean }[];
  dns_must_keep: string[];
}

async function list(mta: Mta): Promise<Listing[]> {
  return JSON.parse(await cliOk(mta, ["dkim", "list", "--json"]));
}

const WEEK = 7 * 86_400_000;

Deno.test({
  name:
    "dkim rotate: the old key signs until the new record is in DNS, then the new one; the old record stays needed",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    const mxDomain = mxZone("dest.test", "mx1.dest.test", net(2));
    await using dns = await FakeDns.start(mxDomain);
    await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
    await using mta = await Mta.start({
      dkim: ["rsa"],
      noStart: true,
      config: { delivery: deliveryConfig({ dns, port }) },
    });
    const old = mta.dkim[0];
    await dns.setZone({ ...mxDomain, "srsa._domainkey.ours.test": { TXT: [old.dnsTxt] } });
    const config = await mta.config();
    await Deno.writeTextFile(
      mta.configPath,
      JSON.stringify({ ...config, dkim_rotation_check: "1s" }, null, 2),
    );
    await mta.launch();

    const out = await cliOk(mta, ["dkim", "rotate", "--domain", "ours.test"]);
    assert.match(out, /running daemon reloaded/);
    const next = printedRecord(out);
    assert.match(next.selector, /^s\d{8}$/, "a date-based selector");
    assert.notEqual(next.selector, old.selector);
    const both = { [old.selector]: old.dnsTxt, [next.selector]: next.txt };

    let [entry] = await list(mta);
    assert.equal(entry.signing.selector, "srsa");
    assert.equal(entry.pending?.selector, next.selector);
    assert.deepEqual(
      entry.dns_must_keep.sort(),
      [
        `${next.selector}._domainkey.ours.test`,
        "srsa._domainkey.ours.test",
      ].sort(),
    );

    const delivered = async (n: number) => {
      await submit(mta, { to: [`bob${n}@dest.test`] });
      const all = await waitFor(
        `message ${n} at the MX`,
        () => mx.accepted().then((t) => t.length === n && t),
      );
      return unstuff(all[n - 1].data);
    };

    // Not yet in DNS: several checks go by, and the old key still signs.
    await delay(2_500);
    assert.deepEqual(await verify(await delivered(1), both), [{ s: "srsa", ok: true }]);

    await dns.setZone({
      ...mxDomain,
      "srsa._domainkey.ours.test": { TXT: [old.dnsTxt] },
      [`${next.selector}._domainkey.ours.test`]: { TXT: [next.txt] },
    });
    await waitFor(
      "the daemon to switch",
      () => mta.stdout.includes(`signs with selector ${next.selector}`),
    );
    const switched = Date.now();
    assert.deepEqual(await verify(await delivered(2), both), [{ s: next.selector, ok: true }]);
    assert.deepEqual(
      await verify(await delivered(3), { [next.selector]: next.txt }),
      [{ s: next.selector, ok: true }],
      "verifies with only the new record",
    );

    [entry] = await list(mta);
    assert.equal(entry.signing.selector, next.selector);
    assert.equal(entry.pending, null);
    assert.equal(entry.retired.length, 1);
    assert.equal(entry.retired[0].selector, "srsa");
    assert.equal(entry.retired[0].needed, true);
    const until = Date.parse(entry.retired[0].until);
    assert.ok(
      Math.abs(until - (switched + WEEK)) < 60_000,
      `kept a week: ${entry.retired[0].until}`,
    );
    assert.ok(entry.dns_must_keep.includes("srsa._domainkey.ours.test"), "old record still needed");
    assert.match(
      await cliOk(mta, ["dkim", "list"]),
      /retired {2}srsa {2}keep its record published until/,
    );

    // The switch survives a restart.
    await mta.restart();
    assert.deepEqual(await verify(await delivered(4), both), [{ s: next.selector, ok: true }]);
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name:
    "dkim rotate --activate switches at once, keeps the config's comments; a pending rotation is not started twice",
  ignore: requireTool("python3:dkim"),
  async fn() {
    await using mta = await Mta.start({ dkim: ["rsa"], noStart: true });
    const old = mta.dkim[0];
    const yaml = "# minimta test config: this comment must stay\n" +
      toYaml(await mta.config()).replace(
        /^dkim:$/m,
        "# the keys, rotated by minimta dkim rotate\ndkim:",
      );
    await Deno.writeTextFile(mta.configPath, yaml);
    await mta.launch();

    const first = await cliOk(mta, ["dkim", "rotate", "--domain", "ours.test"]);
    const pending = printedRecord(first);
    const again = await cli(mta, ["dkim", "rotate", "--domain", "ours.test"]);
    assert.match(
      assertCliError(again, 1, "second rotate"),
      /is pending: publish its record, or finish it with --activate/,
    );

    const out = await cliOk(mta, ["dkim", "rotate", "--domain", "ours.test", "--activate"]);
    assert.match(out, new RegExp(`Signing ours\\.test with selector ${pending.selector} now`));
    assert.match(out, /Keep srsa\._domainkey\.ours\.test published until /);
    const text = await Deno.readTextFile(mta.configPath);
    assert.match(text, /^# minimta test config: this comment must stay$/m);
    assert.match(text, /^# the keys, rotated by minimta dkim rotate$/m);
    const [entry] = parseYaml(text).dkim;
    assert.equal(entry.selector, pending.selector);
    assert.equal(entry.next_selector, undefined);
    assert.equal(entry.retired[0].selector, "srsa");

    // Stored (not delivered: the harness's DNS answers nothing), signed with the new key.
    const id = await submit(mta, { to: ["bob@dest.test"] });
    const bytes = await mta.readEml(id);
    assert.deepEqual(
      await verify(bytes, { [old.selector]: old.dnsTxt, [pending.selector]: pending.txt }),
      [{ s: pending.selector, ok: true }],
    );
    const [listed] = await list(mta);
    assert.equal(listed.signing.selector, pending.selector);
    assert.deepEqual(listed.retired.map((r) => [r.selector, r.needed]), [["srsa", true]]);
    assert.equal(await mta.stop(), 0);
  },
});
