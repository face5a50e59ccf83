const ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZ"; // no vowels: ids never spell words

/**
 * A new queue id: 9 characters of milliseconds since the epoch then 7
 * random ones, so ids sort by arrival and never come from user input
 * (docs/testing.md INJ-04).
 */
export function newQueueId(now: Date = new Date()): string {
  let time = now.getTime();
  let head = "";
  for (let i = 0; i < 9; i++) {
    head = ALPHABET[time % ALPHABET.length] + head;
    time = Math.floor(time / ALPHABET.length);
  }
  const random = crypto.getRandomValues(new Uint8Array(7));
  let tail = "";
  for (const byte of random) tail += ALPHABET[byte % ALPHABET.length];
  return head + tail;
}

const ID_PATTERN = new RegExp(`^[${ALPHABET}]{16}$`);

/** True when `text` has the shape of a queue id (and so is safe in a path). */
export function isQueueId(text: string): boolean {
  return ID_PATTERN.test(text);
}
