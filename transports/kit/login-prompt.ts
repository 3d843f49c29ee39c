/**
 * Logins that need the user (LoginRequest.prompt): an OAuth device login sends a link and a code to
 * approve in a browser. The text goes to the user's bare JID as a chat message from the gateway,
 * and the login's deadline moves out so the user has time to act; the kit's login timeout still
 * bounds everything else.
 */
import { x } from '../../shared/xml/element.js';
import { after, type Clock, type Timer } from '../../shared/clock.js';
import type { Kit } from './kit-types.js';

/** A login deadline that a prompt can push further out (never closer). */
export class LoginDeadline {
  private timer: Timer;
  private at: number;
  private fire: () => void = () => undefined;
  /** Rejects when the deadline passes. */
  readonly expired: Promise<never>;
  private fired = false;
  private readonly started: number;

  constructor(
    private readonly clock: Clock,
    ms: number,
  ) {
    this.started = clock.now().getTime();
    this.at = this.started + ms;
    this.expired = new Promise<never>((_, reject) => {
      this.fire = () => {
        this.fired = true;
        reject(new Error(`no answer within ${Math.round((this.at - this.started) / 1000)}s`));
      };
    });
    this.expired.catch(() => undefined);
    this.timer = after(clock, ms, () => this.fire());
  }

  get passed(): boolean {
    return this.fired;
  }

  extend(waitMs: number): void {
    if (this.fired) return;
    const now = this.clock.now().getTime();
    if (now + waitMs <= this.at) return;
    this.at = now + waitMs;
    this.timer.cancel();
    this.timer = after(this.clock, waitMs, () => this.fire());
  }

  cancel(): void {
    this.timer.cancel();
  }
}

/** The `prompt` of a LoginRequest: a chat message to the user and a longer deadline. */
export function loginPrompt(kit: Kit, user: string, deadline: LoginDeadline): (text: string, waitMs: number) => void {
  let n = 0;
  return (text, waitMs) => {
    deadline.extend(Math.max(0, Math.min(waitMs, 30 * 60_000)));
    kit.send(x('message', { from: kit.domain, to: user, type: 'chat', id: `login-${Date.now().toString(36)}-${n++}` }, x('body', {}, text)));
  };
}
