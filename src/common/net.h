/* TCP listen/connect helpers shared by the API servers and the migration wire. */
#ifndef GLIDE_COMMON_NET_H
#define GLIDE_COMMON_NET_H
#include <stddef.h>
/* "HOST:PORT" ("[v6]:PORT" too). Returns a listening socket or -errno with err set. */
int net_listen_tcp(const char *hostport, int backlog, char *err, size_t errlen);
/* Non-blocking connect with a timeout; returns a connected socket (still O_NONBLOCK) or -errno.
 * dscp > 0 marks the socket's traffic class. */
int net_connect_tcp(const char *hostport, int timeout_ms, int dscp, char *err, size_t errlen);
#endif
