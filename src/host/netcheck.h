/* Network check between two hosts' service interfaces (seed 004's vmkping,
 * nc and net-stats in one): the destination agent serves one check on a
 * fresh port of each address, the source agent runs it from its own address
 * of the same service. What it measures:
 *   - reachability: a TCP connection, its set-up time;
 *   - round-trip time: 20 one-byte TCP exchanges (what the migration wire
 *     feels), min/avg/max;
 *   - MTU: the route's MTU to the peer, then UDP datagrams with "do not
 *     fragment" of that size and smaller, the largest one echoed being the
 *     path MTU (a jumbo-frame host behind a 1500-byte switch port shows up
 *     here, as with `vmkping -d -s 8972`);
 *   - throughput: one TCP stream for a bounded time, as counted by the
 *     receiver.
 * Every message carries a 16-byte one-time token given to both sides by the
 * controller; anything else is ignored or closed. A server ends after one
 * complete check or after its lifetime, whichever comes first. */
#ifndef GLIDE_HOST_NETCHECK_H
#define GLIDE_HOST_NETCHECK_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NETCHECK_TOKEN_LEN 16
#define NETCHECK_SECONDS_DEFAULT 1.0
#define NETCHECK_SECONDS_MAX 10.0
#define NETCHECK_SERVER_LIFE_MS 60000  /* a server waits this long at most for its check */
#define NETCHECK_SERVERS_MAX 8         /* servers at once per process */

/* Serves one check on a fresh port of `host` (a numeric address of this
 * host) in its own thread. *port gets the port (TCP and UDP). 0 or -errno
 * with err set (-EBUSY: NETCHECK_SERVERS_MAX already serve). */
int netcheck_serve(const char *host, const uint8_t token[NETCHECK_TOKEN_LEN], int life_ms, int *port, char *err,
		   size_t errlen);

/* Runs a check from the local address `from` (NULL: the route's choice) to
 * to_host:to_port for `seconds` of throughput. Always returns an object:
 *   {from, to, reachable, error?, connect_ms, rtt_ms{min,avg,max,count},
 *    mtu{route, path, error?}, throughput{bits_per_s, bytes, seconds},
 *    ok, problems[]}
 * ok is false when the peer cannot be reached, or the path MTU is below the
 * route's (frames of the interface's size are lost on the way). */
json_t *netcheck_run(const char *from, const char *to_host, int to_port, const uint8_t token[NETCHECK_TOKEN_LEN],
		     double seconds);

/* "32 hex digits" -> token; false if it is not exactly that. */
bool netcheck_token_parse(const char *hex, uint8_t token[NETCHECK_TOKEN_LEN]);

/* "HOST:PORT" for host (brackets around an IPv6 address). */
void netcheck_endpoint(char *out, size_t len, const char *host, int port);

/* "HOST:PORT" or "[V6]:PORT" -> host (no brackets) and port; false if malformed. */
bool netcheck_endpoint_parse(const char *ep, char *host, size_t hlen, int *port);
#endif
