// @xmpp/client ships no type declarations; tests use it dynamically.
declare module '@xmpp/client';
