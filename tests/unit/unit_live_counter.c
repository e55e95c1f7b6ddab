/* Unit test: a live section added from outside the engine. This file
 * registers a toy "counter" section (a value that changes every 100 us
 * while the monitor runs, the stand-in for a device or disk copied live),
 * then runs itself as two VM monitors and migrates between them with the
 * real `glide migrate`, and snapshots and restores one. Nothing in the
 * engine knows the section: it migrates and snapshots because it
 * registered itself. Checks:
 *   - pre-copy sent the counter more than once (iterate, pending);
 *   - the value sent in the final pass while the VM was stunned is the
 *     value the destination loaded last (complete, load);
 *   - a snapshot carries the value to a restored monitor;
 *   - RAM still passes (the migration and restore themselves).
 * Run with no arguments (tests/run.sh does); "vm run ..." makes it a monitor. */
#include "monitor/monitor.h"
#include "migrate/live.h"
#include "state/state.h"
#include "common/util.h"
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile uint64_t counter = 1;
static uint64_t last_sent;
static int sends;

static void *count_thread(void *arg)
{
	for (;;) {
		__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
		sleep_ns(100000);
	}
	return NULL;
}

static int counter_setup(struct live_source *ls, char *err, size_t errlen)
{
	last_sent = 0;
	return 0;
}

static uint64_t counter_pending(struct live_source *ls)
{
	return __atomic_load_n(&counter, __ATOMIC_RELAXED) != last_sent ? sizeof(uint64_t) : 0;
}

static int counter_send(struct live_source *ls, struct channel *ch)
{
	if (ch->index != 0) /* one value: channel 0 carries it */
		return 0;
	uint64_t v = __atomic_load_n(&counter, __ATOMIC_RELAXED);
	memcpy(channel_payload(ch), &v, sizeof(v));
	int rc = channel_send(ch, sizeof(v));
	if (!rc) {
		last_sent = v;
		sends++;
		if (ch->final)
			glide_log("counter", "final value %llu sent (%d sends)", (unsigned long long)v, sends);
	}
	return rc;
}

static int counter_harvest(struct live_source *ls, char *err, size_t errlen)
{
	return 0;
}

static void counter_cleanup(struct live_source *ls)
{
}

static int counter_load_setup(struct live_dest *ld, char *err, size_t errlen)
{
	return 0;
}

static int counter_load(struct live_dest *ld, const uint8_t *data, size_t len, char *err, size_t errlen)
{
	uint64_t v;
	if (len != sizeof(v)) {
		errf(err, errlen, "counter frame of %zu bytes", len);
		return -EBADMSG;
	}
	memcpy(&v, data, sizeof(v));
	__atomic_store_n(&counter, v, __ATOMIC_RELAXED);
	glide_log("counter", "loaded %llu", (unsigned long long)v);
	return 0;
}

static void counter_load_cleanup(struct live_dest *ld)
{
}

static const struct live_section_ops counter_live = {
	.setup = counter_setup, .pending = counter_pending, .iterate = counter_send, .harvest = counter_harvest,
	.complete = counter_send, .cleanup = counter_cleanup, .load_setup = counter_load_setup,
	.load = counter_load, .load_cleanup = counter_load_cleanup,
};
static const struct state_section_ops counter_section = { .name = "counter", .version = 1, .order = 50,
							   .live = &counter_live };

__attribute__((constructor)) static void counter_register(void)
{
	state_register(&counter_section);
}

/* ---- the test ---- */

static char dir[PATH_MAX], self[PATH_MAX], build[PATH_MAX];
static int failed;

static void check(bool ok, const char *name, const char *detail)
{
	printf("%s live section from a unit test: %s%s%s\n", ok ? "PASS" : "FAIL", name, detail ? ": " : "",
	       detail ? detail : "");
	if (!ok)
		failed++;
}

static pid_t spawn_monitor(const char *name, const char *args)
{
	char cmd[8 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "exec '%s' vm run --api '%s/%s.sock' --log '%s/%s.log' %s >'%s/%s.out' 2>&1", self, dir,
		 name, dir, name, args, dir, name);
	pid_t pid = fork();
	if (pid == 0) {
		setsid();
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[8 * PATH_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The last "counter: WHAT N" value in a log; 0 if none. */
static uint64_t log_value(const char *name, const char *what)
{
	char path[PATH_MAX + 64], line[1024];
	uint64_t v = 0;
	snprintf(path, sizeof(path), "%s/%s.log", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, what);
		if (p && strstr(line, "counter:"))
			v = strtoull(p + strlen(what), NULL, 10);
	}
	fclose(f);
	return v;
}

static bool wait_api(const char *name)
{
	for (int i = 0; i < 400; i++) {
		if (sh("'%s/glide' vm status --api '%s/%s.sock' >/dev/null 2>&1", build, dir, name) == 0)
			return true;
		sleep_ns(50000000);
	}
	return false;
}

static void stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	for (int i = 0; i < 100 && waitpid(pid, NULL, WNOHANG) == 0; i++)
		sleep_ns(50000000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "vm") && !strcmp(argv[2], "run")) {
		pthread_t t;
		sigset_t set; /* the monitor's signal thread takes these; the counter never does */
		sigemptyset(&set);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGHUP);
		sigaddset(&set, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		pthread_create(&t, NULL, count_thread, NULL);
		return monitor_main(argc - 2, argv + 2);
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP live section from a unit test: /dev/kvm not accessible\n");
		return 0;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = 0;
	const char *b = getenv("GLIDE_BUILD");
	if (b)
		snprintf(build, sizeof(build), "%s", b);
	else
		snprintf(build, sizeof(build), "%.*s/..", (int)(strrchr(self, '/') - self), self);
	snprintf(dir, sizeof(dir), "%s/glide-live-counter.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return 1;
	int port = 20000 + (int)(getpid() % 20000);
	char args[2 * PATH_MAX];
	sh("umask 077; openssl rand -hex 32 >'%s/key'", dir);

	/* migrate: source and destination are this binary, the engine is glide's */
	snprintf(args, sizeof(args), "--memory 64M --boot '%s/guests/ab.img'", build);
	pid_t src = spawn_monitor("src", args);
	snprintf(args, sizeof(args), "--incoming 127.0.0.1:%d --key-file '%s/key'", port, dir);
	pid_t dst = spawn_monitor("dst", args);
	bool up = wait_api("src") && wait_api("dst");
	sleep_ns(300000000);
	int rc = up ? sh("'%s/glide' migrate --api '%s/src.sock' --to 127.0.0.1:%d --key-file '%s/key' --json >'%s/m.json' 2>'%s/m.err'",
			 build, dir, port, dir, dir, dir) : -1;
	check(rc == 0, "migration with the extra section completed", rc ? "see m.err" : NULL);
	stop(src);
	uint64_t sent = log_value("src", "final value "), loaded = log_value("dst", "loaded ");
	char d[256];
	snprintf(d, sizeof(d), "source sent %llu while stunned, destination loaded %llu", (unsigned long long)sent,
		 (unsigned long long)loaded);
	check(sent > 1 && sent == loaded, "the value at the stun arrived", d);
	int pre = sh("grep -c 'counter: loaded' '%s/dst.log' | awk '{exit !($1 >= 2)}'", dir);
	check(pre == 0, "pre-copy sent it more than once before the stun", NULL);

	/* snapshot on the destination, restore in a new monitor */
	rc = sh("'%s/glide' vm snapshot --api '%s/dst.sock' --to '%s/vm.snap' >/dev/null 2>'%s/s.err'", build, dir, dir, dir);
	uint64_t snap_sent = log_value("dst", "final value ");
	stop(dst);
	snprintf(args, sizeof(args), "--restore '%s/vm.snap'", dir);
	pid_t res = rc == 0 ? spawn_monitor("res", args) : -1;
	bool restored = res > 0 && wait_api("res");
	uint64_t res_loaded = log_value("res", "loaded ");
	snprintf(d, sizeof(d), "snapshot wrote %llu, restore loaded %llu", (unsigned long long)snap_sent,
		 (unsigned long long)res_loaded);
	check(rc == 0 && restored && snap_sent > 0 && snap_sent == res_loaded, "a snapshot carries it", d);
	stop(res);
	if (!failed)
		sh("rm -rf '%s'", dir);
	else
		printf("    (logs kept in %s)\n", dir);
	return failed ? 1 : 0;
}
