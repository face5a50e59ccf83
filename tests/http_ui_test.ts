/**
 * The web UI of the status server (issue 5), end to end: headless Chromium
 * (Debian's, driven by playwright-core) logs in, finds a deferred message,
 * holds, releases and retries it until it is delivered; screenshots of the
 * dashboard and a message page on a desktop and a phone viewport; CSRF,
 * login and escaping checks over plain fetch; and search is in
 * http_queue_scale_test.ts.
 */
import assert from "node:assert/strict";
import { ALICE, freePorts, requireTool, spoolFixture, waitFor } from "./_harness.ts";
import { deliveryConfig, isGone, submit } from "./_delivery.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";
import {
  ADMIN,
  ADMIN_TOKEN,
  ARTIFACTS,
  CHROMIUM,
  csrfOf,
  httpBase,
  isPng,
  launchChromium,
  pngSize,
  startWebMta,
  storedState,
  WebClient,
} from "./_http.ts";

const needsPython = requireTool("python3:dns");
const needsBrowser = requireTool(CHROMIUM);

// A domain whose MX lookup fails temporarily (SERVFAIL): its mail stays queued.
const DEFER = "later.test";
const deferZone = { [DEFER]: { rcode: "SERVFAIL" } };

Deno.test({
  name:
    "browser: log in, find a deferred message, hold, release, retry until delivered; screenshots",
  ignore: needsPython || needsBrowser,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const net = loopbackNet();
    const [mxPort] = freePorts(1);
    await using dns = await FakeDns.start(deferZone);
    await using mta = await startWebMta({
      config: { delivery: deliveryConfig({ dns, port: mxPort, retry_schedule: ["1h"] }) },
    });
    const base = await httpBase(mta);
    const id = await submit(mta, {
      to: [`bob@${DEFER}`],
      headers: [`From: Alice <${ALICE.user}>`, "Subject: browser flow test"],
    });
    await waitFor(
      "the first attempt to defer the message",
      async () => (await storedState(mta, id)) === "deferred",
    );

    await Deno.mkdir(ARTIFACTS, { recursive: true });
    const browser = await launchChromium();
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      const dialogs: string[] = [];
      page.on("dialog", (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });

      // Not logged in: every page sends the browser to the login form.
      await page.goto(`${base}/queue`);
      assert.equal(new URL(page.url()).pathname, "/login");
      await page.fill('input[name="username"]', ADMIN.user);
      await page.fill('input[name="password"]', "not-the-password");
      await page.click('button[type="submit"]');
      assert.equal(new URL(page.url()).pathname, "/login");
      assert.match(await page.textContent("main") ?? "", /Wrong user, password or token/);

      await page.fill('input[name="username"]', ADMIN.user);
      await page.fill('input[name="password"]', ADMIN.pass);
      await Promise.all([page.waitForURL(`${base}/`), page.click('button[type="submit"]')]);
      assert.equal(await page.textContent("h1"), "Dashboard");
      const cookies = await context.cookies(base);
      const session = cookies.find((c) => c.name === "minimta_session");
      assert.ok(session, `session cookie stored by Chromium: ${JSON.stringify(cookies)}`);
      assert.equal(session.httpOnly, true);
      assert.equal(session.secure, true);
      assert.equal(session.sameSite, "Strict");
      assert.equal(await page.evaluate("document.cookie"), "", "HttpOnly: no script sees it");

      // The queue page lists it; search by id finds it.
      await page.goto(`${base}/queue`);
      assert.ok(await page.isVisible(`a[href="/message/${id}"]`), "message listed on the queue");
      await page.fill('input[name="q"]', id);
      await page.click('form[action="/queue"] button[type="submit"]');
      assert.match(await page.textContent("main") ?? "", /1 message\(s\)/);
      await page.click(`a[href="/message/${id}"]`);
      await page.waitForURL(`${base}/message/${id}`);
      const main = await page.textContent("main") ?? "";
      assert.match(main, /deferred/);
      assert.match(main, new RegExp(`bob@${DEFER.replace(".", "\\.")}`));
      assert.match(main, /Subject: browser flow test/);
      assert.match(main, /4\.\d\.\d/, "the attempt's status is shown");

      // Screenshots: dashboard and message page, desktop and phone.
      await page.screenshot({ path: `${ARTIFACTS}/message-desktop.png`, fullPage: true });
      await page.goto(`${base}/`);
      await page.screenshot({ path: `${ARTIFACTS}/dashboard-desktop.png`, fullPage: true });
      const phone = await browser.newContext({
        viewport: { width: 390, height: 844 },
        deviceScaleFactor: 2,
        isMobile: true,
        hasTouch: true,
        storageState: await context.storageState(),
      });
      const phonePage = await phone.newPage();
      await phonePage.goto(`${base}/`);
      assert.equal(await phonePage.textContent("h1"), "Dashboard", "phone context logged in");
      await phonePage.screenshot({ path: `${ARTIFACTS}/dashboard-phone.png`, fullPage: true });
      await phonePage.goto(`${base}/message/${id}`);
      await phonePage.screenshot({ path: `${ARTIFACTS}/message-phone.png`, fullPage: true });
      // Reads well on a phone: the page does not scroll sideways.
      const overflow = await phonePage.evaluate<number>(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
      );
      assert.ok(overflow <= 1, `message page is ${overflow}px wider than a 390px phone`);
      await phone.close();
      for (
        const [name, width] of [
          ["dashboard-desktop", 1280],
          ["message-desktop", 1280],
          ["dashboard-phone", 780],
          ["message-phone", 780],
        ] as const
      ) {
        const bytes = await Deno.readFile(`${ARTIFACTS}/${name}.png`);
        assert.ok(isPng(bytes), `${name}.png is a PNG`);
        assert.ok(bytes.length > 10_000, `${name}.png is non-trivial (${bytes.length} bytes)`);
        assert.equal(pngSize(bytes).width, width, `${name}.png width`);
      }

      // Hold, then release.
      await page.goto(`${base}/message/${id}`);
      await page.click('form[action$="/hold"] button');
      await page.waitForURL(/done=/);
      assert.match(await page.textContent(".flash") ?? "", /held/);
      assert.equal(await storedState(mta, id), "held");
      assert.ok(await page.isVisible('form[action$="/release"] button'), "Release offered");
      await page.click('form[action$="/release"] button');
      await page.waitForURL(/released/);
      assert.match(await page.textContent(".flash") ?? "", /released/);
      await waitFor(
        "the released message to be tried again and deferred",
        async () =>
          (await storedState(mta, id)) === "deferred" &&
          (await mta.readMeta(id)).recipients[0].attempts >= 2,
      );

      // The domain becomes deliverable; Retry now delivers it.
      await using mx = await FakeMx.start(net(2), mxPort, { name: `mx.${DEFER}` });
      await dns.setZone(mxZone(DEFER, `mx.${DEFER}`, net(2)));
      await page.goto(`${base}/message/${id}`);
      await page.click('form[action$="/retry"] button');
      await page.waitForURL(/done=/);
      await waitFor("the message to be delivered and leave the queue", () => isGone(mta, id));
      const accepted = await mx.accepted();
      assert.equal(accepted.length, 1);
      assert.deepEqual(accepted[0].rcpts, [`bob@${DEFER}`]);

      await page.goto(`${base}/queue`);
      assert.equal(await page.isVisible(`a[href="/message/${id}"]`), false, "gone from the queue");
      assert.match(await page.textContent("main") ?? "", /\b0 message\(s\)/);
      await page.goto(`${base}/message/${id}`);
      assert.match(await page.textContent("main") ?? "", /No message .* in the queue/);
      await page.goto(`${base}/`);
      // Last hour: 1 received, 2 deferred attempts (first try, after release), 1 delivered.
      const lastHour = await page.$$eval(
        ".legend:first-of-type span",
        (spans) => spans.map((s) => s.textContent),
      );
      assert.deepEqual(lastHour, ["received 1", "delivered 1", "deferred 2", "bounced 0"]);
      assert.equal(await page.$$eval("svg.chart rect.delivered", (r) => r.length), 60 + 24);
      const cards = await page.$$eval(".card", (els) => els.map((e) => e.textContent?.trim()));
      assert.deepEqual(cards.slice(0, 3), ["0queued", "0deferred", "0held"]);

      // Log out: the old cookie no longer opens pages.
      await page.click('form[action="/logout"] button');
      await page.waitForURL(`${base}/login`);
      await page.goto(`${base}/`);
      assert.equal(new URL(page.url()).pathname, "/login");
      assert.deepEqual(dialogs, []);
      await context.close();
    } finally {
      await browser.close();
    }
  },
});

Deno.test({
  name: "browser: hostile subject, sender and recipient are shown literally, nothing runs",
  ignore: needsBrowser,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const from = "<b>boss</b>&\"q'@ours.test";
    const to = "<img src=x onerror=alert(2)>@evil.test";
    const subject = "<script>alert(1)</script>";
    let id = "";
    await using mta = await startWebMta({
      config: { delivery: { retry_schedule: ["1h"] } },
      prepare: async (m) => {
        id = await spoolFixture(
          m.spoolDir,
          new TextEncoder().encode(
            `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\nX-Note: </pre><i>x</i>\r\n\r\nbody\r\n`,
          ),
          { from, recipients: [to] },
        );
      },
    });
    const base = await httpBase(mta);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const dialogs: string[] = [];
      page.on("dialog", (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      await page.goto(`${base}/login`);
      await page.fill('input[name="username"]', "anything");
      await page.fill('input[name="password"]', ADMIN_TOKEN);
      await Promise.all([page.waitForURL(`${base}/`), page.click('button[type="submit"]')]);
      for (
        const path of ["/", "/queue", `/queue?q=${encodeURIComponent("<b>")}`, `/message/${id}`]
      ) {
        await page.goto(`${base}${path}`);
        const text = await page.textContent("main") ?? "";
        const where = `${path}`;
        assert.equal(
          await page.$$eval("script", (s) => s.length),
          0,
          `no script element on ${where}`,
        );
        assert.equal(
          await page.$$eval("img, i", (s) => s.length),
          0,
          `no injected element on ${where}`,
        );
        const bold = await page.$$eval("b", (s) => s.map((b) => b.textContent));
        assert.ok(!bold.includes("boss"), `no injected <b> on ${where}`);
        if (path !== "/") assert.ok(text.includes(from), `sender shown literally on ${where}`);
        if (path !== "/") assert.ok(text.includes(to), `recipient shown literally on ${where}`);
      }
      const text = await page.textContent("main") ?? "";
      assert.ok(text.includes(`Subject: ${subject}`), "subject shown literally in the headers");
      assert.ok(text.includes("X-Note: </pre><i>x</i>"));
      await page.goto(
        `${base}/message/${id}?done=${encodeURIComponent("<script>alert(3)</script>")}`,
      );
      assert.equal(await page.textContent(".flash"), "<script>alert(3)</script>");
      assert.equal(await page.$$eval("script", (s) => s.length), 0);
      await page.waitForTimeout(200);
      assert.deepEqual(dialogs, [], "no dialog fired");
    } finally {
      await browser.close();
    }
  },
});

Deno.test("login is required for every page, refuses wrong passwords and non-admins", async () => {
  let id = "";
  await using mta = await startWebMta({
    config: { delivery: { retry_schedule: ["1h"] } },
    prepare: async (m) => {
      id = await spoolFixture(m.spoolDir, new TextEncoder().encode("Subject: x\r\n\r\nbody\r\n"), {
        from: ALICE.user,
        recipients: ["bob@nowhere.test"],
      });
    },
  });
  const anon = await WebClient.forMta(mta);
  for (
    const path of ["/", "/queue", "/queue?q=a", `/message/${id}`, `/message/${id}/delete`, "/nope"]
  ) {
    const res = await anon.get(path);
    await res.body?.cancel();
    assert.equal(res.status, 303, `${path} without login`);
    assert.equal(res.headers.get("location"), "/login", path);
  }
  for (const op of ["hold", "delete", "retry"]) {
    const res = await anon.post(`/message/${id}/${op}`, { csrf: "x", confirm: "yes" });
    await res.body?.cancel();
    assert.equal(res.status, 303, `POST ${op} without login`);
    assert.equal(res.headers.get("location"), "/login");
  }
  assert.equal(await storedState(mta, id), "queued", "nothing changed");

  const login = await anon.page("/login");
  assert.equal(login.status, 200);
  const csp = login.headers.get("content-security-policy") ?? "";
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /form-action 'self'/);
  assert.equal(login.headers.get("x-content-type-options"), "nosniff");
  assert.equal(login.headers.get("x-frame-options"), "DENY");
  assert.equal(login.headers.get("referrer-policy"), "no-referrer");
  assert.doesNotMatch(
    login.body,
    /<script|\sstyle=|\son[a-z]+=/i,
    "no inline script, style or handler",
  );
  assert.ok(!login.body.includes(ADMIN_TOKEN) && !login.body.includes(ADMIN.pass));

  const refused = [
    [ADMIN.user, "wrong-password"],
    [ADMIN.user, ""],
    ["nobody@ours.test", ADMIN.pass],
    [ALICE.user, ALICE.pass], // right password, but not an admin
    ["", ADMIN_TOKEN.slice(0, -1)],
  ];
  for (const [user, pass] of refused) {
    const c = new WebClient(anon.base);
    const res = await c.login(user, pass);
    assert.equal(res.status, 401, `${user} / ${pass ? "…" : "(empty)"} refused`);
    assert.deepEqual(res.headers.getSetCookie(), [], "no cookie for a refused login");
  }

  for (const [user, pass] of [[ADMIN.user, ADMIN.pass], ["", ADMIN_TOKEN]]) {
    const c = new WebClient(anon.base);
    const res = await c.login(user, pass);
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/");
    const flags = c.setCookie!.split(";").map((s) => s.trim());
    assert.match(flags[0], /^minimta_session=[A-Za-z0-9_-]{40,}$/);
    assert.ok(flags.includes("HttpOnly"), c.setCookie!);
    assert.ok(flags.includes("Secure"), c.setCookie!);
    assert.ok(flags.includes("SameSite=Strict"), c.setCookie!);
    const dash = await c.page("/");
    assert.equal(dash.status, 200);
    assert.match(dash.headers.get("content-security-policy") ?? "", /default-src 'none'/);
    assert.equal(dash.headers.get("cache-control"), "no-store");
    assert.ok(!dash.body.includes(ADMIN_TOKEN) && !dash.body.includes(ADMIN.pass), "no secrets");
    assert.doesNotMatch(dash.body, /<script|style=/i);
  }
  // A made-up cookie is no session.
  const forged = new WebClient(anon.base);
  forged.cookie = "minimta_session=" + "A".repeat(43);
  const res = await forged.get("/");
  await res.body?.cancel();
  assert.equal(res.status, 303);
});

Deno.test("CSRF: an action without the session's token is refused (403) and changes nothing", async () => {
  let id = "";
  await using mta = await startWebMta({
    config: { delivery: { retry_schedule: ["1h"] } },
    prepare: async (m) => {
      id = await spoolFixture(m.spoolDir, new TextEncoder().encode("Subject: x\r\n\r\nbody\r\n"), {
        from: ALICE.user,
        recipients: ["bob@nowhere.test"],
      });
    },
  });
  const web = await WebClient.forMta(mta);
  assert.equal((await web.login(ADMIN.user, ADMIN.pass)).status, 303);
  const token = await web.csrf();
  const other = new WebClient(web.base);
  await other.login("", ADMIN_TOKEN);
  const otherToken = await other.csrf();
  assert.notEqual(token, otherToken, "each session has its own token");
  // Let the start-up attempt finish (DNS at 127.0.0.1:9 fails: deferred).
  await waitFor("the first attempt", async () => (await storedState(mta, id)) === "deferred");
  const before = await Deno.readTextFile(mta.metaPath(id));

  const attempts: [string, Record<string, string>][] = [
    [`/message/${id}/hold`, {}],
    [`/message/${id}/hold`, { csrf: "" }],
    [`/message/${id}/hold`, { csrf: token.slice(0, -1) + (token.endsWith("A") ? "B" : "A") }],
    [`/message/${id}/hold`, { csrf: otherToken }],
    [`/message/${id}/delete`, { confirm: "yes" }],
    [`/message/${id}/delete`, { confirm: "yes", csrf: otherToken }],
    [`/message/${id}/retry`, {}],
    ["/logout", {}],
  ];
  for (const [path, fields] of attempts) {
    const res = await web.post(path, fields);
    const body = await res.text();
    assert.equal(res.status, 403, `${path} ${JSON.stringify(fields)}: ${body}`);
    assert.match(body, /CSRF/);
  }
  // Bodies that are no form at all are refused the same way (not a 500).
  for (const init of [{}, { body: JSON.stringify({ csrf: token }), type: "application/json" }]) {
    const res = await fetch(`${web.base}/message/${id}/hold`, {
      method: "POST",
      headers: { cookie: web.cookie!, ...(init.type ? { "content-type": init.type } : {}) },
      body: init.body,
      redirect: "manual",
    });
    assert.equal(res.status, 403, `${init.type ?? "no body"}: ${await res.text()}`);
  }
  const jsonLogin = await fetch(`${web.base}/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: ADMIN.user, password: ADMIN.pass }),
    redirect: "manual",
  });
  await jsonLogin.body?.cancel();
  assert.equal(jsonLogin.status, 401, "a login that is not a form is refused");
  assert.equal(await Deno.readTextFile(mta.metaPath(id)), before, "metadata untouched");
  assert.equal((await web.page("/")).status, 200, "still logged in (logout refused)");

  // Actions are POST only: a GET on an action URL does nothing.
  const get = await web.page(`/message/${id}/hold`);
  assert.equal(get.status, 404);
  assert.equal(await storedState(mta, id), "deferred");

  // With the token the same requests work.
  const hold = await web.post(`/message/${id}/hold`, { csrf: token });
  await hold.body?.cancel();
  assert.equal(hold.status, 303);
  assert.equal(await storedState(mta, id), "held");
  // Delete needs the confirmation step.
  const unconfirmed = await web.post(`/message/${id}/delete`, { csrf: token });
  await unconfirmed.body?.cancel();
  assert.equal(unconfirmed.headers.get("location"), `/message/${id}/delete`);
  assert.equal(await storedState(mta, id), "held");
  const confirm = await web.page(`/message/${id}/delete`);
  assert.equal(csrfOf(confirm.body), token);
  assert.match(confirm.body, /name="confirm" value="yes"/);
  const del = await web.post(`/message/${id}/delete`, { csrf: token, confirm: "yes" });
  await del.body?.cancel();
  assert.equal(del.headers.get("location"), "/queue");
  assert.equal(await storedState(mta, id), null, "deleted");
});
