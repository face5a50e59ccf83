import assert from "node:assert/strict";
import { BUILTIN_PROVIDERS, BUILTIN_THROTTLE_RULES } from "../config/mod.ts";
import { hostMatches, matchRule, mergeProviders, parseRate, providerFor } from "./shaping.ts";

Deno.test("parseRate() gives the gap between messages for N/s, N/m and N/h", () => {
  assert.equal(parseRate("10/s"), 100);
  assert.equal(parseRate("600/m"), 100);
  assert.equal(parseRate("3600/h"), 1_000);
  assert.equal(parseRate(" 1.5 / m "), 40_000);
  for (const bad of ["", "0/m", "10", "10/d", "ten/m", "-1/s", "10/min"]) {
    assert.equal(parseRate(bad), null, bad);
  }
});

Deno.test("hostMatches() matches MX host suffixes at a label boundary, ignoring case and dots", () => {
  assert.ok(hostMatches("aspmx.l.google.com", ".google.com"));
  assert.ok(hostMatches("ASPMX.L.GOOGLE.COM.", ".google.com"));
  assert.ok(hostMatches("google.com", ".google.com"));
  assert.ok(hostMatches("mx1.bigmail.example", "bigmail.example"));
  assert.ok(!hostMatches("evilgoogle.com", ".google.com"));
  assert.ok(!hostMatches("google.com.evil.test", ".google.com"));
  assert.ok(!hostMatches("anything.test", "."));
});

Deno.test("providerFor() picks the provider of the most preferred matching MX host", () => {
  const providers = mergeProviders(BUILTIN_PROVIDERS, []);
  assert.equal(
    providerFor(["aspmx.l.google.com", "alt1.aspmx.l.google.com"], providers)?.name,
    "google",
  );
  assert.equal(
    providerFor(["contoso-com.mail.protection.outlook.com"], providers)?.name,
    "microsoft",
  );
  assert.equal(providerFor(["mta5.am0.yahoodns.net"], providers)?.name, "yahoo");
  assert.equal(providerFor(["mx01.mail.icloud.com"], providers)?.name, "apple");
  assert.equal(providerFor(["mx.own.test", "aspmx.l.google.com"], providers)?.name, "google");
  assert.equal(providerFor(["mx.own.test"], providers), null);
});

Deno.test("mergeProviders() lets a configured provider replace a built-in by name", () => {
  const mine = {
    name: "google",
    mx: [".google.com"],
    connections: 2,
    messages_per_connection: 10,
    rate: "60/m",
  };
  const merged = mergeProviders(BUILTIN_PROVIDERS, [mine]);
  assert.equal(merged.filter((p) => p.name === "google").length, 1);
  assert.equal(providerFor(["aspmx.l.google.com"], merged)?.connections, 2);
  assert.equal(merged.length, BUILTIN_PROVIDERS.length);
});

Deno.test("matchRule() names the big providers' throttling replies, only for their provider", () => {
  const rules = BUILTIN_THROTTLE_RULES;
  const gmail = {
    code: 421,
    enhanced: "4.7.28",
    text:
      "Our system has detected an unusual rate of unsolicited mail originating from your IP address.",
  };
  assert.equal(matchRule(gmail, "google", rules)?.provider, "google");
  assert.equal(matchRule(gmail, null, rules), null, "a google rule does not apply elsewhere");
  const yahoo = {
    code: 421,
    enhanced: "4.7.0",
    text: "[TSS04] Messages from 192.0.2.1 temporarily deferred",
  };
  assert.ok(matchRule(yahoo, "yahoo", rules)?.suspend);
  const ts03 = {
    code: 554,
    enhanced: "5.7.9",
    text: "Message not accepted for policy reasons. [TS03]",
  };
  assert.ok(matchRule(ts03, "yahoo", rules), "a 5xx the rule names is throttling too");
  const ms = {
    code: 451,
    enhanced: "4.7.500",
    text: "Server busy. Please try again later from [192.0.2.1].",
  };
  assert.ok(matchRule(ms, "microsoft", rules)?.suspend);
  const conns = {
    code: 421,
    enhanced: "4.3.2",
    text: "The maximum number of concurrent connections has been exceeded",
  };
  assert.equal(matchRule(conns, "microsoft", rules)?.rate, "60/m");
  assert.equal(
    matchRule({ code: 550, enhanced: "5.1.1", text: "No such user" }, "google", rules),
    null,
  );
  assert.equal(
    matchRule({ code: 250, enhanced: "2.0.0", text: "unusual rate" }, "google", rules),
    null,
  );
  const mine = [{ match: "^421 4\\.7\\.0 slow down", suspend: 5_000 }];
  assert.ok(matchRule({ code: 421, enhanced: "4.7.0", text: "slow down please" }, null, mine));
  assert.ok(matchRule({ code: 421, enhanced: "4.7.0", text: "SLOW DOWN" }, "bigmail", mine));
});
