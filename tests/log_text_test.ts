/**
 * `log.format: text` reads as plain sentences: values sit in the message
 * unquoted, and the fields the message does not show follow as key=value,
 * quoted only when they hold spaces.
 */
import assert from "node:assert/strict";
import { delay, freePorts, Mta } from "./_harness.ts";

Deno.test("text log: values read as part of the sentence, other fields as key=value", async () => {
  const [httpPort] = freePorts(1);
  await using mta = await Mta.start({
    config: {
      log: { format: "text", level: "info" },
      http: { listen_addr: `127.0.0.1:${httpPort}` },
    },
  });
  const smtp = await mta.connect();
  try {
    await smtp.expect(220);
    await smtp.cmd("EHLO t.test", 250);
    await smtp.cmd("MAIL FROM:<a@ours.test>", 530); // no AUTH: refused, and logged
  } finally {
    smtp.close();
  }
  const deadline = Date.now() + 10_000;
  while (!/rejected/.test(mta.stdout) && Date.now() < deadline) await delay(50);
  const lines = mta.stdout.split("\n");
  const line = (pattern: RegExp) => lines.find((l) => pattern.test(l)) ?? lines.join("\n");
  assert.match(
    line(/Status page/),
    new RegExp(`Status page, /metrics and /healthz on http://127\\.0\\.0\\.1:${httpPort}/$`),
  );
  assert.match(
    line(/listening/),
    new RegExp(
      `minimta listening: submission 127\\.0\\.0\\.1:${mta.port} \\(STARTTLS\\), 127\\.0\\.0\\.1:${mta.tlsPort} \\(TLS\\); 0 messages in the queue$`,
    ),
  );
  const rejected = line(/ rejected /);
  assert.match(rejected, / client_ip=127\.0\.0\.1 /);
  assert.match(rejected, / from=a@ours\.test$/);
  assert.match(rejected, / stage=mail_from code=530 /);
  assert.match(rejected, / reason="[^"]* [^"]*"/, "a value with spaces is quoted");
  assert.doesNotMatch(lines.join("\n"), /"127\.0\.0\.1/, "no quoted addresses");
});
