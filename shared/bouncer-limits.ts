/**
 * The most a transport keeps for a user who chose to stay connected (bouncer mode): room lines
 * per room and their age. A transport's configuration may lower them, never raise them, so the
 * privacy policy (server/modules/policy) can state them as maximums whatever the configuration.
 */
export const MAX_BOUNCER_LINES = 1000;
export const MAX_BOUNCER_HOURS = 24;
