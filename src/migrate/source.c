/* placeholder until the engine lands */
#include "migrate/migrate.h"
#include "common/util.h"
#include <errno.h>
int migrate_incoming(struct monitor *m, const char *addrs, const char *key_file, const struct vm_config *cfg,
		     int serial_fd, char *err, size_t errlen)
{
	errf(err, errlen, "incoming migration not implemented yet");
	return -ENOSYS;
}
int migrate_api_start(void *ctx, const struct http_request *req, json_t **resp) { *resp = http_error("not yet"); return 501; }
int migrate_api_status(void *ctx, const struct http_request *req, json_t **resp) { *resp = http_error("not yet"); return 501; }
int migrate_api_cancel(void *ctx, const struct http_request *req, json_t **resp) { *resp = http_error("not yet"); return 501; }
void migrate_cancel(struct monitor *m) { (void)m; }
