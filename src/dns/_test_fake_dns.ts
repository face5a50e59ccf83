// Test helper: runs tests/fakes/fake_dns.py as a child process on a free port.
// Not a test file itself (the name does not end in _test.ts).

const PYTHON = "/usr/bin/python3";
const SCRIPT = new URL("../../tests/fakes/fake_dns.py", import.meta.url).pathname;

/** Why the fake DNS cannot run here, or null when it can. */
export const fakeDnsMissing: string | null = await checkPython();

/** When set, a missing tool fails the tests instead of skipping them (STYLE.md). */
export const requireInterop = Deno.env.get("MINIMTA_REQUIRE_INTEROP") === "1";

/** Test options: skipped loudly (in the test name) when dnspython is missing, unless CI demands it. */
export function fakeDnsTest(name: string): { name: string; ignore: boolean } {
  const skip = fakeDnsMissing !== null && !requireInterop;
  return { name: skip ? `${name} (SKIPPED: ${fakeDnsMissing})` : name, ignore: skip };
}

/** A running fake DNS server. */
export interface FakeDns extends AsyncDisposable {
  port: number;
  /** `"127.0.0.1:PORT"`, for `ResolverOptions.servers`. */
  server: string;
  /** Replaces the zone; the server reloads it on its next query. */
  setZone(zone: Record<string, unknown>): Promise<void>;
  /** Queries seen so far, from the server's --log file. */
  queries(): Promise<{ name: string; type: string; proto: string }[]>;
}

async function checkPython(): Promise<string | null> {
  try {
    const out = await new Deno.Command(PYTHON, {
      args: ["-c", "import dns.message"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success ? null : "python3-dnspython is not installed";
  } catch {
    return `${PYTHON} is missing`;
  }
}

/** Starts the fake DNS with `zone`; dispose it to stop it. */
export async function startFakeDns(zone: Record<string, unknown>): Promise<FakeDns> {
  if (fakeDnsMissing !== null) throw new Error(`Cannot start fake DNS: ${fakeDnsMissing}`);
  const dir = await Deno.makeTempDir({ prefix: "minimta_fake_dns_" });
  const zonePath = `${dir}/zone.json`;
  const logPath = `${dir}/queries.jsonl`;
  const setZone = async (z: Record<string, unknown>) => {
    // Write then rename, so the server never reads half a file.
    await Deno.writeTextFile(`${zonePath}.tmp`, JSON.stringify(z));
    await Deno.rename(`${zonePath}.tmp`, zonePath);
  };
  await setZone(zone);
  const child = new Deno.Command(PYTHON, {
    args: [SCRIPT, "--listen", "127.0.0.1", "--port", "0", "--zone", zonePath, "--log", logPath],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const port = await readReady(child);
  return {
    port,
    server: `127.0.0.1:${port}`,
    setZone,
    queries: async () => {
      const text = await Deno.readTextFile(logPath).catch(() => "");
      return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
    },
    [Symbol.asyncDispose]: async () => {
      child.kill("SIGTERM");
      await child.stdout.cancel();
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function readReady(child: Deno.ChildProcess): Promise<number> {
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  const match = /^READY (\d+)/.exec(text);
  if (!match) {
    child.kill("SIGKILL");
    await child.stdout.cancel();
    await child.status;
    throw new Error(`Fake DNS did not start: "${text.trim()}"`);
  }
  return Number(match[1]);
}
