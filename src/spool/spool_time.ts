/**
 * The time the spool writes (`Date.prototype.toISOString`, always
 * `YYYY-MM-DDTHH:MM:SS.sssZ`) as ms since the epoch, or NaN for any other
 * text. Start-up reads two or more such times from each of 100,000 metadata
 * files: `Date.parse` plus a `toISOString` round trip to prove the text
 * canonical cost 2.6 µs a time, this digit-by-digit read 0.25 µs (measured
 * with 100,000 times on the 2-core bench machine).
 */
export function parseSpoolTime(text: string): number {
  if (text.length !== 24 || !hasSeparators(text)) return NaN;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  const hour = digits(text, 11, 2);
  const minute = digits(text, 14, 2);
  const second = digits(text, 17, 2);
  const ms = digits(text, 20, 3);
  // Date.UTC reads years 0-99 as 1900-1999: those few go the slow way.
  if (!(year >= 100 && month >= 1 && month <= 12 && day >= 1)) return NaN;
  if (day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59) return NaN;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms);
}

function hasSeparators(t: string): boolean {
  return t[4] === "-" && t[7] === "-" && t[10] === "T" && t[13] === ":" && t[16] === ":" &&
    t[19] === "." && t[23] === "Z";
}

// The number made of `n` decimal digits from `start`, or NaN when one is not a digit.
function digits(text: string, start: number, n: number): number {
  let value = 0;
  for (let i = start; i < start + n; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return NaN;
    value = value * 10 + d;
  }
  return value;
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  if (month !== 2) return DAYS[month - 1];
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
}
