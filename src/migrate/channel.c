/* Channels (channel.h): the shared bandwidth cap and LIVE frames. */
#include "migrate/channel.h"
#include "migrate/live.h"
#include "state/state.h"
#include <stdlib.h>
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

void rate_limit_ahead(struct rate_limiter *r, uint64_t bytes, uint64_t ahead_ns)
{
	uint64_t now, slot;
	if (!r || !r->bytes_per_s)
		return;
	pthread_mutex_lock(&r->lock);
	now = now_ns();
	if (r->next_ns + RATE_LIMIT_BURST_NS < now)
		r->next_ns = now - RATE_LIMIT_BURST_NS;
	slot = r->next_ns;
	r->next_ns += bytes * 1000000000ULL / r->bytes_per_s;
	if (r->in_line)
		ahead_ns = 0;
	pthread_mutex_unlock(&r->lock);
	if (slot > now + ahead_ns)
		sleep_ns(slot - now - ahead_ns);
}

void rate_limit(struct rate_limiter *r, uint64_t bytes)
{
	rate_limit_ahead(r, bytes, 0);
}

uint8_t *channel_payload(struct channel *ch)
{
	return ch->file ? ch->file_buf : wire_tx_payload(ch->ws) + LIVE_FRAME_ID_BYTES;
}

int channel_file_open(struct channel *ch)
{
	ch->file_buf = malloc(LIVE_PAYLOAD_MAX);
	return ch->file_buf ? 0 : -ENOMEM;
}

void channel_file_close(struct channel *ch)
{
	free(ch->file_buf);
	ch->file_buf = NULL;
}

int channel_send(struct channel *ch, size_t len)
{
	if (!ch->file)
		rate_limit(ch->rl, len + LIVE_FRAME_ID_BYTES);
	channel_lock(ch);
	int rc = channel_send_locked(ch, len);
	channel_unlock(ch);
	return rc;
}

int channel_send_locked(struct channel *ch, size_t len)
{
	uint8_t *frame = ch->file ? NULL : wire_tx_payload(ch->ws);
	int rc;

	if (len > LIVE_PAYLOAD_MAX) {
		snprintf(ch->err, sizeof(ch->err), "live section %u built a %zu-byte frame (at most %u)", ch->section_id,
			 len, (unsigned)LIVE_PAYLOAD_MAX);
		return -EMSGSIZE;
	}
	if (ch->file) { /* snapshot: one state section per payload, CRC-checked like every section */
		rc = state_write_section(ch->file, ch->section->name, 0, ch->section->version, ch->file_buf, len);
		if (rc)
			snprintf(ch->err, sizeof(ch->err), "writing the snapshot: %s", strerror(-rc));
		else
			ch->bytes += len;
		return rc;
	}
	memcpy(frame, &ch->section_id, LIVE_FRAME_ID_BYTES);
	len += LIVE_FRAME_ID_BYTES;
	rc = wire_send(ch->ws, FRAME_LIVE, (uint32_t)len, ch->err, sizeof(ch->err));
	if (rc)
		return rc;
	ch->bytes += len;
	__atomic_add_fetch(ch->wire_bytes, len + WIRE_FRAME_HEADER_BYTES, __ATOMIC_RELAXED);
	return 0;
}
