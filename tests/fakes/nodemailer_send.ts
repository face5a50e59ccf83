/**
 * Sends one message with nodemailer and prints the server's reply to the
 * final dot. Usage: `deno run … nodemailer_send.ts '{"port":…,"secure":…,
 * "cert":"cert.pem","user":…,"pass":…,"to":…}'`. A separate process keeps
 * nodemailer's sockets and timers out of the test runner's sanitizers.
 */
import nodemailer from "nodemailer";

const o = JSON.parse(Deno.args[0]);
const transport = nodemailer.createTransport({
  host: "localhost",
  port: o.port,
  secure: o.secure,
  requireTLS: !o.secure,
  auth: { user: o.user, pass: o.pass },
  tls: { ca: [await Deno.readTextFile(o.cert)], servername: "localhost" },
});
const info = await transport.sendMail({
  from: o.user,
  to: o.to,
  subject: "from nodemailer",
  text: "Hello from nodemailer.",
});
transport.close();
await Deno.stdout.write(new TextEncoder().encode(`${info.response}\n`));
