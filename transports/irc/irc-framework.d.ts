// The part of irc-framework 4.14 (CommonJS, no type declarations of its own) that the IRC adapter
// uses. Event payloads list only the fields the adapter reads.
declare module 'irc-framework' {
  export interface IrcFrameworkMessage {
    tags: Record<string, string | true>;
    prefix: string;
    nick: string;
    ident: string;
    hostname: string;
    command: string;
    params: string[];
  }

  export interface IrcFrameworkTransport {
    on(event: string, fn: (...args: any[]) => void): unknown;
    removeAllListeners(): unknown;
    connect(): void;
    writeLine(line: string, cb?: () => void): void;
    isConnected(): boolean;
    setEncoding(encoding: string): boolean;
    disposeSocket(): void;
    close(force?: boolean): void;
  }

  export interface PrefixMode {
    symbol: string;
    mode: string;
  }

  export interface ClientOptions {
    host: string;
    port: number;
    nick: string;
    username: string;
    gecos: string;
    password?: string;
    tls?: boolean;
    account?: { account?: string; password?: string };
    sasl_mechanism?: string;
    sasl_disconnect_on_fail?: boolean;
    encoding?: string;
    version?: string | null;
    auto_reconnect?: boolean;
    ping_interval?: number;
    ping_timeout?: number;
    message_max_length?: number;
    enable_echomessage?: boolean;
    transport?: new (options: any) => IrcFrameworkTransport;
    [extra: string]: unknown;
  }

  export class Client {
    constructor(options?: Partial<ClientOptions>);
    options: ClientOptions;
    user: { nick: string; username: string; gecos: string; host: string; modes: Set<string> };
    network: {
      server: string;
      name: string;
      options: Record<string, any> & { PREFIX?: PrefixMode[]; CHANTYPES?: string[]; CHANMODES?: string[] };
      supports(name: string): any;
      isChannelName(name: string): boolean;
      cap: { isEnabled(cap: string): boolean; enabled: string[] };
    };
    connection: { connected: boolean; end(data?: string, hadError?: boolean): void; transport: IrcFrameworkTransport | null };
    readonly connected: boolean;
    connect(options?: Partial<ClientOptions>): void;
    use(middleware: (client: Client, rawEvents: Middleware, parsedEvents: Middleware) => void): this;
    raw(line: string): void;
    rawString(...args: string[]): string;
    quit(message?: string): void;
    changeNick(nick: string): void;
    caseCompare(a: string, b: string): boolean;
    caseLower(s: string): string;
    on(event: string, fn: (...args: any[]) => void): this;
    once(event: string, fn: (...args: any[]) => void): this;
    removeListener(event: string, fn: (...args: any[]) => void): this;
    removeAllListeners(event?: string): this;
  }

  export interface Middleware {
    use(fn: (command: string, message: IrcFrameworkMessage, rawLine: string, client: Client, next: (err?: unknown) => void) => void): void;
  }

  const IRC: { Client: typeof Client };
  export default IRC;
}
