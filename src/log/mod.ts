/**
 * @module
 * Logging for minimta. Two streams share one sink: the operational log
 * (category `minimta.<part>`) and the mail log (category `minimta.mail`),
 * where every step a message takes is one named event carrying its queue id.
 * Built on LogTape; JSON lines by default so journald and log shippers can
 * parse them, or plain text for humans.
 */
import {
  compareLogLevel,
  configureSync,
  disposeSync,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";
import { RotatingFile, type RotatingFileOptions } from "./_rotating_file.ts";

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** Lowest level written. @default "info" */
  level?: "debug" | "info" | "warning" | "error";
  /** Output format. @default "json" */
  format?: "json" | "text";
  /** Where lines go. @default "stdout" */
  target?: "stdout" | "stderr";
  /**
   * A log file instead of `target`, rotated by size; "" for none. When it
   * cannot be written, lines go to stderr (one warning) until it can.
   * @default ""
   */
  file?: string;
  /** Size in bytes at which {@linkcode LoggingOptions.file} is rotated. @default {104857600} */
  maxSize?: number;
  /** Rotated files kept (`FILE.1` … `FILE.N`). @default {10} */
  maxFiles?: number;
}

/**
 * Configures the process-wide logger. Lines are written synchronously so
 * that nothing logged before a crash or `kill -9` is lost in a buffer.
 */
export function setupLogging(options: LoggingOptions = {}): void {
  const format = options.format ?? "json";
  const out = options.target === "stderr" ? Deno.stderr : Deno.stdout;
  const encoder = new TextEncoder();
  // JSON.stringify already escapes every control character; text lines are
  // escaped by hand (docs/testing.md INJ-05).
  const format_ = format === "json"
    ? jsonLine
    : (record: LogRecord) => escapeControl(textFormatter(record));
  logFile?.close();
  logFile = options.file ? new LogFile(options.file, options) : null;
  const sink: Sink = (record: LogRecord) => {
    const bytes = encoder.encode(format_(record));
    if (!logFile?.write(bytes)) writeAll(logFile ? Deno.stderr : out, bytes);
  };
  const lowest = toLevel(options.level ?? "info");
  mailOut = { sink, lowest };
  configureSync({
    reset: true,
    sinks: { out: sink },
    loggers: [
      { category: ["minimta"], sinks: ["out"], lowestLevel: lowest },
      { category: ["logtape", "meta"], sinks: ["out"], lowestLevel: "warning" },
    ],
  });
}

/** Flushes and detaches the logger; call before the process exits. */
export function closeLogging(): void {
  mailOut = null;
  disposeSync();
  logFile?.close();
  logFile = null;
}

/**
 * Closes and reopens the log file (`log.file`) at its configured path, for
 * an outside logrotate that moved it (SIGUSR1). Does nothing without one.
 */
export function reopenLogFile(): void {
  logFile?.reopen();
}

let logFile: LogFile | null = null;

// How long lines go to stderr after the log file failed before it is tried again.
const RETRY_MS = 60_000;

/**
 * The log file with its failure policy: a full disk or an unwritable file
 * must never stop mail, so a failed write sends the line to stderr, warns
 * there once (not per line), and the file is tried again a minute later or
 * on {@linkcode reopenLogFile}.
 */
class LogFile {
  #path: string;
  #options: RotatingFileOptions;
  #file: RotatingFile | null = null;
  #failedAt: number | null = null;

  constructor(path: string, options: RotatingFileOptions) {
    this.#path = path;
    this.#options = { maxSize: options.maxSize, maxFiles: options.maxFiles };
    this.reopen();
  }

  /** Writes a line; false when it could not, and the caller writes it to stderr. */
  write(bytes: Uint8Array): boolean {
    if (this.#failedAt !== null) {
      if (Date.now() - this.#failedAt < RETRY_MS) return false;
      this.reopen();
      if (this.#failedAt !== null) return false;
    }
    try {
      this.#file!.write(bytes);
      return true;
    } catch (error) {
      this.#fail(error);
      return false;
    }
  }

  reopen(): void {
    const failed = this.#failedAt !== null;
    try {
      if (this.#file) this.#file.reopen();
      else this.#file = new RotatingFile(this.#path, this.#options);
      this.#failedAt = null;
      if (failed) warn(`the log file "${this.#path}" (log.file) is writable again`);
    } catch (error) {
      this.#fail(error);
    }
  }

  close(): void {
    this.#file?.close();
  }

  #fail(error: unknown): void {
    if (this.#failedAt === null) {
      const why = error instanceof Error ? error.message : String(error);
      warn(
        `cannot write the log file "${this.#path}" (log.file): ${why}; ` +
          "logging to stderr until it works again",
      );
    }
    this.#failedAt = Date.now();
  }
}

function warn(text: string): void {
  writeAll(Deno.stderr, new TextEncoder().encode(`minimta: ${text}\n`));
}

/** The operational logger of one part, e.g. `log("spool")`. */
export function log(part: string): Logger {
  return getLogger(["minimta", part]);
}

/** Names of the mail log's events, one per step a message takes. */
export type MailLogName =
  | "connect"
  | "auth_failure"
  | "auth_success"
  | "rejected"
  | "received"
  | "signed"
  | "queued"
  | "delivery"
  | "bounced"
  | "expired"
  | "removed"
  | "held"
  | "released"
  | "suppressed"
  | "unsuppressed"
  | "provider_suspended"
  | "delayed"
  | "bulk_lint";

/**
 * Writes one mail-log event. `fields` should carry `queue_id` whenever the
 * message has one, so a grep for the id shows its whole life.
 */
export function mailLog(event: MailLogName, fields: Record<string, unknown>): void {
  const out = mailOut;
  const level = WARNING_EVENTS.has(event) ? "warning" : "info";
  if (!out || compareLogLevel(level, out.lowest) < 0) return;
  // Straight to the sink, with the record LogTape would build: the mail log
  // writes several lines per message, and LogTape's logger (template parsing,
  // the walk up the category tree for sinks) cost 4% of the intake thread.
  out.sink({
    category: MAIL_CATEGORY,
    level,
    message: [event],
    rawMessage: event,
    timestamp: Date.now(),
    properties: { event, ...fields },
  });
}

const MAIL_CATEGORY = ["minimta", "mail"] as const;
const WARNING_EVENTS = new Set<MailLogName>([
  "rejected",
  "auth_failure",
  "provider_suspended",
  "bulk_lint",
]);

// The sink and level setupLogging configured, for mailLog; null before and after.
let mailOut: { sink: Sink; lowest: LogLevel } | null = null;

function toLevel(level: string): LogLevel {
  return level as LogLevel;
}

// One JSON object per line, as LogTape's JSON Lines formatter writes them
// ("@timestamp", level, message, logger, then the properties), built with a
// single JSON.stringify: the mail log writes several lines per message.
function jsonLine(record: LogRecord): string {
  return JSON.stringify({
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: record.level === "warning" ? "WARN" : record.level.toUpperCase(),
    message: renderMessage(record.message),
    logger: record.category.join("."),
    ...record.properties,
  }) + "\n";
}

function renderMessage(parts: readonly unknown[]): string {
  if (parts.length === 1) return String(parts[0]);
  let text = "";
  parts.forEach((part, i) => {
    text += i % 2 === 0 ? String(part) : typeof part === "string" ? part : JSON.stringify(part);
  });
  return text;
}

// "bare": values read as part of the sentence ("on http://127.0.0.1:2580/"),
// not as quoted string literals.
const textBase = getTextFormatter({ timestamp: "date-time-tz", value: "bare" });

// Text lines for humans: LogTape's text line, then the fields the message
// does not already show as key=value, so mail-log events show their queue id.
function textFormatter(record: LogRecord): string {
  const base = textBase(record).trimEnd();
  const shown = placeholders(record.rawMessage);
  const fields = Object.entries(record.properties)
    .filter(([key]) => key !== "event" && !shown.has(key))
    .map(([key, value]) => `${key}=${textValue(value)}`);
  return `${base}${fields.length ? " " + fields.join(" ") : ""}\n`;
}

/** The property names a message template interpolates, `{name}`. */
function placeholders(template: string | TemplateStringsArray): Set<string> {
  if (typeof template !== "string") return new Set();
  return new Set([...template.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1].trim()));
}

// Quoted only when a bare value would not read as one token.
function textValue(value: unknown): string {
  if (typeof value !== "string") return JSON.stringify(value) ?? String(value);
  return value === "" || /[\s"=]/.test(value) ? JSON.stringify(value) : value;
}

// A log line must stay one line and carry no terminal escapes a client sent
// us (docs/testing.md INJ-05): everything below 0x20 except the final newline is escaped.
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f]|\n(?!$)/g;

function escapeControl(line: string): string {
  return line.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function writeAll(out: typeof Deno.stdout, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += out.writeSync(bytes.subarray(offset));
}
