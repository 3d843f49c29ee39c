/** What the network adapter tests share: a log that keeps its lines, and an event recorder. */
import type { AdapterLogger, LegacySession, LegacySessionEvents } from '../../transports/kit/adapter.js';

export interface TestLog {
  log: AdapterLogger;
  lines: string[];
}

export function testLog(): TestLog {
  const lines: string[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  return { lines, log: { debug: at('debug'), info: at('info'), warn: at('warn') } };
}

export type EventName = keyof LegacySessionEvents;

/** Every event a session may emit (a compile error here means a new one is missing). */
const EVENTS = {
  message: 1,
  roomMessage: 1,
  roomJoined: 1,
  roomJoinFailed: 1,
  occupantJoined: 1,
  occupantLeft: 1,
  occupantChanged: 1,
  nickChanged: 1,
  subject: 1,
  serverMessage: 1,
  contactPresence: 1,
  typing: 1,
  disconnected: 1,
  connected: 1,
  roster: 1,
  displayed: 1,
  invited: 1,
  syncState: 1,
  credentials: 1,
  secretState: 1,
  gatewayMessage: 1,
  directoryChanged: 1,
} satisfies Record<EventName, 1>;

/** Records every session event from the moment of attaching; take() returns the first unseen match or waits. */
export class Recorder<S extends LegacySession = LegacySession> {
  private readonly seen: { event: EventName; args: unknown[] }[] = [];
  private readonly waiting: { event: EventName; pred: (a: any[]) => boolean; resolve: (a: any[]) => void }[] = [];
  readonly all: { event: EventName; args: unknown[] }[] = [];

  constructor(readonly session: S) {
    for (const event of Object.keys(EVENTS) as EventName[]) {
      (session as unknown as { on(e: string, f: (...a: unknown[]) => void): void }).on(event, (...args: unknown[]) => {
        this.all.push({ event, args });
        const i = this.waiting.findIndex((w) => w.event === event && w.pred(args));
        if (i !== -1) this.waiting.splice(i, 1)[0]!.resolve(args);
        else this.seen.push({ event, args });
      });
    }
  }

  take<E extends EventName>(event: E, pred: (args: LegacySessionEvents[E]) => boolean = () => true, timeoutMs = 5000): Promise<LegacySessionEvents[E]> {
    const i = this.seen.findIndex((s) => s.event === event && pred(s.args as LegacySessionEvents[E]));
    if (i !== -1) return Promise.resolve(this.seen.splice(i, 1)[0]!.args as LegacySessionEvents[E]);
    return new Promise((resolve, reject) => {
      const w = {
        event,
        pred: pred as (a: any[]) => boolean,
        resolve: (a: any[]) => {
          clearTimeout(timer);
          resolve(a as LegacySessionEvents[E]);
        },
      };
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        reject(new Error(`no '${event}' event within ${timeoutMs} ms; seen: ${this.all.map((e) => e.event).join(', ')}`));
      }, timeoutMs);
      this.waiting.push(w);
    });
  }

  /** Messages (text) seen so far, of both kinds. */
  texts(): string[] {
    return this.all.filter((e) => e.event === 'message' || e.event === 'roomMessage').map((e) => (e.args[e.event === 'message' ? 1 : 2] as { text: string }).text);
  }

  /** Forgets everything seen so far. */
  clear(): void {
    this.seen.length = 0;
  }

  /**
   * Events emitted but not taken yet. Taken after a marker event (events arrive in order), this
   * is the positive end of a "nothing else arrived" check: anything unwanted came before the marker.
   */
  unseen<E extends EventName>(event: E, pred: (args: LegacySessionEvents[E]) => boolean = () => true): number {
    return this.seen.filter((s) => s.event === event && pred(s.args as LegacySessionEvents[E])).length;
  }

  async none(event: EventName, pred: (args: any[]) => boolean = () => true, ms = 400): Promise<boolean> {
    try {
      await this.take(event, pred as never, ms);
      return false;
    } catch {
      return true;
    }
  }
}
