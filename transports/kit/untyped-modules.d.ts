// @xmpp/component-core (the connection, stream and XEP-0114 handshake under @xmpp/component) ships no type declarations.
declare module '@xmpp/component-core';
