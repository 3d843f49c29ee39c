// @xmpp/client and @xmpp/component ship no type declarations; tests use them dynamically.
declare module '@xmpp/client';
declare module '@xmpp/component';
