/** The login form of the admin console (see ../auth.ts for how the login is checked). */
import { html, page } from './layout.js';

export function loginPage(opts: { formToken: string; next: string; username?: string; error?: string | null; flash?: string | null }): string {
  const body = html`<div class="login">
<h1>Gatehouse admin</h1>
<form method="post" action="/login">
<input type="hidden" name="csrf" value="${opts.formToken}">
<input type="hidden" name="next" value="${opts.next}">
<label for="username">Administrator JID</label>
<input id="username" type="text" name="username" value="${opts.username ?? ''}" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus>
<label for="password">XMPP password</label>
<input id="password" type="password" name="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
<p class="muted">Only the administrators named in the server configuration can log in, with their XMPP account's password.</p>
<p class="muted"><a href="/privacy">Privacy policy</a> · <a href="/datenschutz">Datenschutzerklärung</a></p>
</div>`;
  return page({ title: 'Log in – Gatehouse admin', error: opts.error, flash: opts.flash }, body);
}
