/**
 * What a module adds to the admin HTTP interface (http.ts), declared in its `admin` slot as it
 * declares its commands, and served while the module is loaded:
 *
 *   pages      GET PATH for a signed-in administrator: a page of the console (the shell, navigation
 *              and flash message come from http.ts); listed in the navigation when it has `nav`
 *   actions    POST PATH from a form on such a page; http.ts has checked the session, the CSRF
 *              token and the origin before the action runs
 *   downloads  GET PATH for a signed-in administrator: a file (the transport audit as CSV)
 *   public     GET PATH for anyone, without a session (the privacy policy)
 *
 * The JSON API (`GET /api/NAME`) is not declared here: it serves the module's commands marked
 * `http` (server/commands/command.ts), so the CLI, the control socket and the API share one
 * definition. http.ts itself serves the overview, the login, /metrics and /healthz.
 *
 * A page that shows personal data (JIDs, IPs) calls `env.audit(what)` once per view, which records
 * the read with the administrator's JID (P21); an action logs what it changed, naming the admin.
 */
import type { PageEnv, PageResult } from './pages/layout.js';
import type { ServerContext } from '../core/context.js';

export type { PageEnv, PageResult };

declare module '../core/context.js' {
  interface GatehouseModule {
    /** The module's pages, form actions, downloads and public pages on the admin HTTP interface (admin/contract.ts). */
    readonly admin?: ModuleAdmin;
  }
}

/** What a module declares in its `admin` slot (core/context.ts GatehouseModule). */
export interface ModuleAdmin {
  readonly pages?: readonly AdminPage[];
  readonly actions?: readonly AdminAction[];
  readonly downloads?: readonly AdminDownload[];
  readonly public?: readonly PublicPage[];
}

export interface AdminPage {
  /** `/sessions`: a plain path, no query. */
  readonly path: string;
  /** Listed in the console's navigation with this label, after the overview, by `order` (then module order). */
  readonly nav?: { readonly label: string; readonly order: number };
  render(env: PageEnv): PageResult | Promise<PageResult>;
}

/** What an action answers: where the browser goes next (a page) and the message shown there. */
export interface ActionResult {
  redirect: string;
  flash: string;
}

export interface AdminAction {
  readonly path: string;
  run(env: PageEnv, form: URLSearchParams): Promise<ActionResult>;
}

export interface Download {
  /** 200, or the status of a refusal whose body (plain text) says why. */
  status: number;
  /** The Content-Type of a 200 answer. */
  type: string;
  body: string;
  /** The file name the browser saves it under. */
  filename: string;
}

export interface AdminDownload {
  readonly path: string;
  serve(env: PageEnv): Promise<Download>;
}

/** What a public page gets: no administrator, so no audit. */
export interface PublicEnv {
  ctx: ServerContext;
  url: URL;
  now: Date;
}

export interface PublicPage {
  readonly path: string;
  /** Throws AdminHttpError for a bad request (its message is the plain-text answer). */
  serve(env: PublicEnv): Promise<{ type: string; body: string }>;
}

/** An answer with this status and a one-line plain-text message (bad query parameters and the like). */
export class AdminHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
