/**
 * @module
 * Who may submit mail and as whom: the users file (`users.json` in the
 * original MiniMTA format or `users.txt`), scrypt password hashes, the
 * per-user sender rules, per-user sending limits and failed-login throttling.
 */
export { Authenticator, type AuthResult } from "./authenticator.ts";
export { hashPassword, verifyPassword } from "./password.ts";
export { replaceFile } from "./replace_file.ts";
export { allowedSenders, senderAllowed } from "./sender_policy.ts";
export {
  type LimitRecord,
  type LimitUsage,
  SendingLimits,
  type SendingLimitsOptions,
} from "./sending_limits.ts";
export {
  type AuthAttempt,
  AuthThrottle,
  type AuthThrottleOptions,
  type FailureVerdict,
} from "./throttle.ts";
export { plaintextUsers, readUsersFile, type User, usersFormat, writeUsersFile } from "./users.ts";
