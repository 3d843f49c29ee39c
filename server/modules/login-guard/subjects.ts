/** How the failed-login guard names what it counts and blocks (the guard, its commands and its admin page). */
import { addressGroup } from '../../../shared/ip-addresses.js';

/**
 * The subject an IP address is counted and blocked under: an IPv4 address as itself (also when
 * written IPv4-mapped), an IPv6 address as its /64, the same grouping as the listeners' limits.
 */
export const ipSubject = addressGroup;
