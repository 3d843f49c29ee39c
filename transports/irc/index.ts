export { IrcAdapter, createIrcAdapter, ircAdapter, isIrcRoomId, DEFAULT_SESSION_OPTIONS, type IrcAdapterOptions } from './adapter.js';
export { IrcSession, type IrcSessionOptions } from './session.js';
export { IrcCommandError, type IrcCommandCondition } from './errors.js';
export { IRC_REGISTRATION_FIELDS } from './settings.js';
export { DEFAULT_FLOOD, type FloodOptions } from './flood.js';
