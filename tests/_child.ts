/**
 * A test peer run as a child process (the Python fakes in tests/fakes/): it
 * counts as started once it prints `READY` on stdout, and is killed and
 * reaped on dispose.
 */

const decoder = new TextDecoder();

/** A child process that printed `READY …` on stdout; killed and reaped on dispose. */
export class ReadyChild {
  readonly child: Deno.ChildProcess;
  #stderr = "";
  #pumps: Promise<void>[];

  private constructor(child: Deno.ChildProcess, stdout: ReadableStreamDefaultReader<Uint8Array>) {
    this.child = child;
    this.#pumps = [
      (async () => {
        // Nothing more is printed; keep reading so the pipe never fills.
        while (!(await stdout.read()).done) { /* drain */ }
      })(),
      (async () => {
        for await (const c of child.stderr) this.#stderr += decoder.decode(c);
      })(),
    ];
  }

  static async spawn(cmd: string, args: string[], timeoutMs = 10_000): Promise<ReadyChild> {
    const child = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    let out = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    try {
      while (!out.includes("READY")) {
        const { value, done } = await reader.read();
        if (done) break;
        out += decoder.decode(value);
      }
    } finally {
      clearTimeout(timer);
    }
    const server = new ReadyChild(child, reader);
    if (!out.includes("READY")) {
      await server.dispose();
      throw new Error(`${cmd} ${args.join(" ")} did not start:\n${out}\n${server.stderr}`);
    }
    return server;
  }

  get stderr(): string {
    return this.#stderr;
  }

  async dispose(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.child.status;
    await Promise.all(this.#pumps);
  }
}
