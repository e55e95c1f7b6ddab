/* The destination's migration port: accepting one session's streams. */
#ifndef GLIDE_MIGRATE_ACCEPT_H
#define GLIDE_MIGRATE_ACCEPT_H
#include "migrate/wire.h"
#include <stdbool.h>
#include <stdint.h>

/* How long the other streams of a session may take after its first one. */
#define INCOMING_STREAMS_WAIT_MS 30000

/* Accepts connections on the listening sockets (made non-blocking) until
 * every stream of one authenticated session is in: streams[0..*nstreams)
 * are then open and own their sockets. Unauthenticated, foreign and
 * surplus connections are refused and logged, and waiting goes on.
 * Returns 0, or a negative errno with err set (the other streams of the
 * session did not come within INCOMING_STREAMS_WAIT_MS, or poll failed). */
int incoming_accept(const int *listeners, int nl, const uint8_t key[WIRE_KEY_BYTES], bool can_encrypt,
		    struct wire_stream streams[WIRE_MAX_STREAMS], uint32_t *nstreams, char *err, size_t errlen);
#endif
