/**
 * Replaces the file at `path` with `text` atomically (write a sibling,
 * fsync, rename), so a reader never sees half a file. The old file's mode,
 * owner and group are kept: root editing a file must not make it unreadable
 * for the daemon's own user (e.g. 0640 root:minimta). A new file gets 0600.
 */
export async function replaceFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const old = await Deno.stat(path).catch(() => null);
  const mode = (old?.mode ?? 0o600) & 0o777;
  const file = await Deno.open(tmp, { write: true, createNew: true, mode });
  try {
    const bytes = new TextEncoder().encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
    await file.sync();
  } finally {
    file.close();
  }
  if (old) {
    // The umask may have narrowed the mode given to open.
    await Deno.chmod(tmp, mode);
    if (old.uid !== null && old.gid !== null) {
      await Deno.chown(tmp, old.uid, old.gid).catch(() => {});
    }
  }
  await Deno.rename(tmp, path);
}
