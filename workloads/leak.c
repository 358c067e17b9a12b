/*
 * leak: allocate memory at a controlled rate, for the kubelet memory harness.
 *
 * See workloads/README.md for the options, the JSON-lines output and the exit codes.
 * The command line must match harness/config/suite.py Leak.leak_args().
 *
 * Built static (make -C workloads) so that the same binary runs as a plain process,
 * in a FROM-scratch Docker/containerd image and in a Kubernetes pod.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef LEAK_VERSION
#define LEAK_VERSION "dev"
#endif

#define EXIT_OK 0
#define EXIT_RUNTIME 1     /* mmap/write failed, cannot continue */
#define EXIT_BAD_ARGS 2
#define EXIT_HEAP_CAP 3    /* HEAP_CAP_EXIT_CODE in harness/config/suite.py */

#define NS_PER_S 1000000000LL
#define UNLIMITED_THRESHOLD (1ULL << 62) /* v1 reports "no limit" as ~LONG_MAX rounded to a page */
#define PAGECACHE_BLOCK (1 << 20)
#define MAX_PROCESSES 1024

/* ------------------------------------------------------------------ options */

struct options {
    uint64_t chunk;          /* bytes per chunk */
    double interval_ms;      /* between chunk deadlines; 0 = as fast as possible */
    uint64_t max;            /* stop allocating at this many bytes (per process); 0 = never */
    int64_t start_delay_ms;
    int64_t hold_ms;         /* -1: hold until SIGTERM/SIGINT */
    int processes;
    double touch;            /* fraction of pages written */
    int heap_cap_percent;    /* 0 = off */
    int pagecache;           /* mode */
    const char *file;        /* pagecache file (process 0; children append .<index>) */
    int keep_file;
};

static struct options opt = {
    .chunk = 4u << 20,
    .interval_ms = 100.0,
    .max = 0,
    .start_delay_ms = 0,
    .hold_ms = -1,
    .processes = 1,
    .touch = 1.0,
    .heap_cap_percent = 0,
    .pagecache = 0,
    .file = NULL,
    .keep_file = 0,
};

/* ------------------------------------------------------------------ state */

static volatile sig_atomic_t g_stop_signal = 0;
static volatile sig_atomic_t g_child_changed = 0;
static int g_index = 0; /* 0 = parent, 1..N-1 = children */
static pid_t g_children[MAX_PROCESSES];
static int g_nchildren = 0;
static int g_statm_fd = -1;
static long g_page_size = 4096;
static uint64_t g_allocated = 0;
static uint64_t g_chunks = 0;

static void on_stop(int sig) { g_stop_signal = sig; }
static void on_child(int sig) { (void)sig; g_child_changed = 1; }

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static uint64_t resident_bytes(void) {
    char buf[128];
    if (g_statm_fd < 0)
        return 0;
    ssize_t n = pread(g_statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long size = 0, res = 0;
    if (sscanf(buf, "%llu %llu", &size, &res) != 2)
        return 0;
    return (uint64_t)res * (uint64_t)g_page_size;
}

/* Escape a string for a JSON value (enough for paths and messages). */
static void json_escape(char *out, size_t cap, const char *in) {
    size_t o = 0;
    for (; *in && o + 7 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

/*
 * Print one event as a JSON line with a single write() (atomic on pipes below PIPE_BUF,
 * so lines of several processes sharing stdout never interleave). `extra` is either
 * NULL or a printf format producing `"key": value, ...` pairs.
 */
static void emit(const char *event, const char *extra, ...) {
    char line[2048];
    int n = snprintf(line, sizeof line,
                     "{\"event\": \"%s\", \"pid\": %d, \"proc\": %d, \"mono_ns\": %" PRId64
                     ", \"wall_ns\": %" PRId64 ", \"allocated\": %" PRIu64 ", \"resident\": %" PRIu64
                     ", \"chunks\": %" PRIu64,
                     event, (int)getpid(), g_index, clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_REALTIME),
                     g_allocated, resident_bytes(), g_chunks);
    if (extra && n > 0 && (size_t)n < sizeof line - 4) {
        line[n++] = ',';
        line[n++] = ' ';
        va_list ap;
        va_start(ap, extra);
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 3, extra, ap);
        va_end(ap);
        if (m > 0)
            n += m < (int)(sizeof line - (size_t)n - 3) ? m : (int)(sizeof line - (size_t)n - 4);
    }
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 3)
        n = (int)sizeof line - 3;
    line[n++] = '}';
    line[n++] = '\n';
    const char *p = line;
    size_t left = (size_t)n;
    while (left > 0) {
        ssize_t w = write(STDOUT_FILENO, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* reader gone: keep leaking, SIGPIPE is ignored */
        }
        p += w;
        left -= (size_t)w;
    }
}

static void emit_error(const char *fmt, ...) {
    char msg[512], esc[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_escape(esc, sizeof esc, msg);
    emit("error", "\"message\": \"%s\"", esc);
    fprintf(stderr, "leak: %s\n", msg);
}

/* ------------------------------------------------------------------ cgroup limit */

/* Read the first unsigned number in a file ("max" -> UINT64_MAX). Returns 0 on failure. */
static int read_limit_file(const char *path, uint64_t *out) {
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    if (strncmp(buf, "max", 3) == 0) {
        *out = UINT64_MAX;
        return 1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return 0;
    *out = v;
    return 1;
}

/* hierarchical_memory_limit from a v1 memory.stat */
static int read_v1_hierarchical(const char *dir, uint64_t *out) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char key[128];
    unsigned long long v;
    int found = 0;
    while (fscanf(f, "%127s %llu", key, &v) == 2) {
        if (strcmp(key, "hierarchical_memory_limit") == 0) {
            *out = v;
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

/*
 * Find the directory of the own memory cgroup. v1: the line of /proc/self/cgroup whose
 * controller list holds "memory", mapped through the mountinfo entry of the cgroup
 * filesystem with the "memory" super option; v2: the "0::" line and the cgroup2 mount.
 * Sets *version to 1 or 2. Returns 1 on success.
 */
static int own_memory_cgroup(char *dir, size_t cap, int *version) {
    char cg_v1[PATH_MAX] = "", cg_v2[PATH_MAX] = "";
    int have_v1 = 0, have_v2 = 0;
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return 0;
    char line[PATH_MAX + 256];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        if (!c1)
            continue;
        char *c2 = strchr(c1 + 1, ':');
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (*ctrls == '\0') {
            snprintf(cg_v2, sizeof cg_v2, "%s", path);
            have_v2 = 1;
            continue;
        }
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", ctrls);
        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (strcmp(t, "memory") == 0) {
                snprintf(cg_v1, sizeof cg_v1, "%s", path);
                have_v1 = 1;
            }
        }
    }
    fclose(f);
    if (!have_v1 && !have_v2)
        return 0;

    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return 0;
    int ok = 0;
    char mline[4096];
    while (!ok && fgets(mline, sizeof mline, f)) {
        /* id parent major:minor root mountpoint options [optional...] - fstype source superopts */
        char root[PATH_MAX], mnt[PATH_MAX];
        if (sscanf(mline, "%*s %*s %*s %4095s %4095s", root, mnt) != 2)
            continue;
        char *sep = strstr(mline, " - ");
        if (!sep)
            continue;
        char fstype[64], source[256], super[1024] = "";
        if (sscanf(sep + 3, "%63s %255s %1023s", fstype, source, super) < 2)
            continue;
        const char *cg;
        int v;
        if (have_v1 && strcmp(fstype, "cgroup") == 0) {
            int mem = 0;
            for (char *save = NULL, *t = strtok_r(super, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, "memory") == 0)
                    mem = 1;
            if (!mem)
                continue;
            cg = cg_v1;
            v = 1;
        } else if (!have_v1 && have_v2 && strcmp(fstype, "cgroup2") == 0) {
            cg = cg_v2;
            v = 2;
        } else {
            continue;
        }
        /* map the cgroup path into the mount: strip the mount's root when it is a prefix */
        size_t rl = strlen(root);
        const char *rel;
        if (strcmp(root, "/") == 0)
            rel = cg;
        else if (strncmp(cg, root, rl) == 0 && (cg[rl] == '/' || cg[rl] == '\0'))
            rel = cg + rl;
        else
            rel = ""; /* cgroup namespace or bind-mounted own cgroup: the mount is the cgroup */
        snprintf(dir, cap, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel);
        *version = v;
        ok = 1;
    }
    fclose(f);
    return ok;
}

/*
 * The memory limit that applies to this process: the own cgroup's (and, v2, its
 * ancestors' within the mount; v1 hierarchical_memory_limit), else MemTotal.
 * *source receives "cgroup-v1", "cgroup-v2" or "meminfo".
 */
static uint64_t memory_limit(const char **source, char *cgdir, size_t cap) {
    int version = 0;
    uint64_t limit = UINT64_MAX;
    cgdir[0] = '\0';
    if (own_memory_cgroup(cgdir, cap, &version)) {
        char path[PATH_MAX + 32];
        uint64_t v;
        if (version == 1) {
            snprintf(path, sizeof path, "%s/memory.limit_in_bytes", cgdir);
            if (read_limit_file(path, &v) && v < limit)
                limit = v;
            if (read_v1_hierarchical(cgdir, &v) && v < limit)
                limit = v;
        } else {
            char walk[PATH_MAX];
            snprintf(walk, sizeof walk, "%s", cgdir);
            for (;;) {
                snprintf(path, sizeof path, "%s/memory.max", walk);
                if (!read_limit_file(path, &v))
                    break; /* left the mount (root has no memory.max) */
                if (v < limit)
                    limit = v;
                char *slash = strrchr(walk, '/');
                if (!slash || slash == walk)
                    break;
                *slash = '\0';
            }
        }
        if (limit < UNLIMITED_THRESHOLD) {
            *source = version == 1 ? "cgroup-v1" : "cgroup-v2";
            return limit;
        }
    }
    FILE *f = fopen("/proc/meminfo", "re");
    if (f) {
        char key[64];
        unsigned long long kb;
        while (fscanf(f, "%63s %llu kB\n", key, &kb) == 2) {
            if (strcmp(key, "MemTotal:") == 0) {
                limit = (uint64_t)kb * 1024;
                break;
            }
        }
        fclose(f);
    }
    *source = "meminfo";
    return limit;
}

/* ------------------------------------------------------------------ allocation */

/*
 * Anonymous memory comes from arenas: large private mappings reserved up front (virtual only,
 * MAP_NORESERVE) and handed out contiguously, so chunks that are not a multiple of the page
 * size still make exactly ceil(allocated / page) pages resident. A page becomes resident when
 * the allocation first reaches into it (and it is selected by --touch).
 * Transparent huge pages are disabled on the arenas (MADV_NOHUGEPAGE): a 2 MiB page would make
 * memory resident ahead of the allocation and blur the rate and the OOM point.
 */
#define ARENA_BYTES (1ULL << 30)

static unsigned char *g_arena = NULL;
static uint64_t g_arena_size = 0;
static uint64_t g_arena_used = 0;     /* bytes handed out from the current arena */
static uint64_t g_arena_touched = 0;  /* pages of the current arena already considered */
static uint64_t g_page_index = 0;     /* pages considered over all arenas (for --touch) */

static int new_arena(uint64_t at_least) {
    uint64_t ps = (uint64_t)g_page_size;
    uint64_t size = at_least > ARENA_BYTES ? (at_least + ps - 1) / ps * ps : ARENA_BYTES;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED && errno == ENOMEM && size > at_least) {
        /* strict overcommit (vm.overcommit_memory=2) counts the reservation: map only the chunk */
        size = (at_least + ps - 1) / ps * ps;
        p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, flags, -1, 0);
    }
    if (p == MAP_FAILED) {
        emit_error("mmap(%" PRIu64 ") failed: %s", size, strerror(errno));
        return -1;
    }
    madvise(p, (size_t)size, MADV_NOHUGEPAGE);
    g_arena = p;
    g_arena_size = size;
    g_arena_used = 0;
    g_arena_touched = 0;
    return 0;
}

/* Allocate `bytes` of anonymous memory and write to the configured fraction of its pages. */
static int alloc_anon(uint64_t bytes) {
    uint64_t ps = (uint64_t)g_page_size;
    while (bytes > 0) {
        if (g_arena == NULL || g_arena_used == g_arena_size) {
            if (new_arena(bytes) != 0)
                return -1;
        }
        uint64_t take = g_arena_size - g_arena_used < bytes ? g_arena_size - g_arena_used : bytes;
        g_arena_used += take;
        bytes -= take;
        uint64_t end_page = (g_arena_used + ps - 1) / ps;
        volatile unsigned char *base = g_arena;
        for (uint64_t i = g_arena_touched; i < end_page; i++, g_page_index++) {
            /* spread the touched pages evenly: page k is touched when floor((k+1)f) > floor(k f) */
            if (opt.touch >= 1.0 ||
                floor((double)(g_page_index + 1) * opt.touch) > floor((double)g_page_index * opt.touch))
                base[i * ps] = (unsigned char)(i | 1);
        }
        g_arena_touched = end_page;
    }
    return 0;
}

static int g_file_fd = -1;
static char g_file_path[PATH_MAX];
static unsigned char *g_block = NULL;

/* Write `bytes` to the page-cache file with write(), like dd (no fsync, no drop). */
static int write_pagecache(uint64_t bytes) {
    while (bytes > 0) {
        size_t n = bytes < PAGECACHE_BLOCK ? (size_t)bytes : PAGECACHE_BLOCK;
        ssize_t w = write(g_file_fd, g_block, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            emit_error("write(%s) failed: %s", g_file_path, strerror(errno));
            return -1;
        }
        bytes -= (uint64_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------------ children */

/* first non-zero exit code of a child that exited by itself (1 or 3); signal deaths are only events */
static int g_child_worst = 0;

static void reap_children(void) {
    g_child_changed = 0;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (int i = 0; i < g_nchildren; i++) {
            if (g_children[i] == pid) {
                g_children[i] = 0;
                if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && g_child_worst == 0)
                    g_child_worst = WEXITSTATUS(status);
                if (WIFSIGNALED(status))
                    emit("child_exit", "\"child_pid\": %d, \"child_proc\": %d, \"signal\": %d", (int)pid, i + 1,
                         WTERMSIG(status));
                else
                    emit("child_exit", "\"child_pid\": %d, \"child_proc\": %d, \"exit_code\": %d", (int)pid,
                         i + 1, WEXITSTATUS(status));
            }
        }
    }
}

/* Forward `sig` to the children still alive and wait for all of them. */
static void stop_children(int sig) {
    for (int i = 0; i < g_nchildren; i++)
        if (g_children[i] > 0)
            kill(g_children[i], sig);
    for (int i = 0; i < g_nchildren; i++) {
        if (g_children[i] <= 0)
            continue;
        int status;
        pid_t r;
        do
            r = waitpid(g_children[i], &status, 0);
        while (r < 0 && errno == EINTR);
        if (r <= 0)
            continue;
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && g_child_worst == 0)
            g_child_worst = WEXITSTATUS(status);
        if (WIFSIGNALED(status))
            emit("child_exit", "\"child_pid\": %d, \"child_proc\": %d, \"signal\": %d", (int)r, i + 1,
                 WTERMSIG(status));
        else
            emit("child_exit", "\"child_pid\": %d, \"child_proc\": %d, \"exit_code\": %d", (int)r, i + 1,
                 WEXITSTATUS(status));
        g_children[i] = 0;
    }
}

/* ------------------------------------------------------------------ main loop */

/* Sleep until the absolute CLOCK_MONOTONIC deadline; returns early (0) on a stop signal. */
#define SLEEP_SLICE_NS (50 * 1000000LL) /* bounds the reaction to a signal that races the check */
static int sleep_until(int64_t deadline_ns) {
    for (;;) {
        if (g_stop_signal)
            return 0;
        if (g_index == 0 && g_child_changed)
            reap_children();
        int64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= deadline_ns)
            return 1;
        int64_t until = deadline_ns - now > SLEEP_SLICE_NS ? now + SLEEP_SLICE_NS : deadline_ns;
        struct timespec ts = {.tv_sec = until / NS_PER_S, .tv_nsec = until % NS_PER_S};
        int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (rc != 0 && rc != EINTR)
            return 1;
    }
}

static int finish(int code, const char *reason) {
    if (g_index == 0 && g_nchildren > 0) {
        stop_children(code != EXIT_OK || g_stop_signal ? SIGTERM : 0);
        if (code == 0 && g_child_worst != 0)
            code = g_child_worst;
    }
    if (g_file_fd >= 0) {
        close(g_file_fd);
        if (!opt.keep_file)
            unlink(g_file_path);
    }
    emit("exit", "\"reason\": \"%s\", \"exit_code\": %d", reason, code);
    return code;
}

static int run(void) {
    char cgdir[PATH_MAX], esc[PATH_MAX * 2];
    const char *limit_source = "none";
    uint64_t limit = memory_limit(&limit_source, cgdir, sizeof cgdir);
    uint64_t cap = 0;
    if (opt.heap_cap_percent > 0)
        cap = (uint64_t)((long double)limit * opt.heap_cap_percent / 100.0L);
    json_escape(esc, sizeof esc, cgdir);

    if (opt.pagecache) {
        if (opt.file)
            snprintf(g_file_path, sizeof g_file_path, "%s", opt.file);
        else
            snprintf(g_file_path, sizeof g_file_path, "leak-pagecache.%d", (int)getpid());
        if (g_index > 0) {
            size_t l = strlen(g_file_path);
            snprintf(g_file_path + l, sizeof g_file_path - l, ".%d", g_index);
        }
        g_file_fd = open(g_file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (g_file_fd < 0) {
            emit_error("open(%s) failed: %s", g_file_path, strerror(errno));
            return finish(EXIT_RUNTIME, "error");
        }
        g_block = malloc(PAGECACHE_BLOCK);
        if (!g_block) {
            emit_error("malloc failed");
            return finish(EXIT_RUNTIME, "error");
        }
        memset(g_block, 0xa5, PAGECACHE_BLOCK);
    }

    char fesc[PATH_MAX * 2];
    json_escape(fesc, sizeof fesc, opt.pagecache ? g_file_path : "");
    emit("start",
         "\"version\": \"%s\", \"mode\": \"%s\", \"chunk\": %" PRIu64 ", \"interval_ms\": %.6g, \"max\": %" PRIu64
         ", \"processes\": %d, \"touch\": %.6g, \"hold_ms\": %" PRId64 ", \"start_delay_ms\": %" PRId64
         ", \"heap_cap_percent\": %d, \"heap_cap_bytes\": %" PRIu64 ", \"limit\": %" PRIu64
         ", \"limit_source\": \"%s\", \"cgroup\": \"%s\", \"file\": \"%s\"",
         LEAK_VERSION, opt.pagecache ? "pagecache" : "anon", opt.chunk, opt.interval_ms, opt.max, opt.processes,
         opt.touch, opt.hold_ms, opt.start_delay_ms, opt.heap_cap_percent, cap, limit, limit_source, esc, fesc);

    int64_t t0 = clock_ns(CLOCK_MONOTONIC) + opt.start_delay_ms * 1000000LL;
    if (opt.start_delay_ms > 0 && !sleep_until(t0))
        return finish(EXIT_OK, "signal");
    int64_t interval_ns = (int64_t)llround(opt.interval_ms * 1e6);

    for (uint64_t k = 0;; k++) {
        if (g_stop_signal)
            return finish(EXIT_OK, "signal");
        if (opt.max > 0 && g_allocated >= opt.max)
            break;
        if (k > 0 && interval_ns > 0 && !sleep_until(t0 + (int64_t)k * interval_ns))
            return finish(EXIT_OK, "signal");
        if (g_index == 0 && g_child_changed)
            reap_children();
        uint64_t n = opt.chunk;
        if (opt.max > 0 && opt.max - g_allocated < n)
            n = opt.max - g_allocated;
        if (cap > 0 && g_allocated + n > cap) {
            emit("heap_cap", "\"heap_cap_bytes\": %" PRIu64 ", \"limit\": %" PRIu64 ", \"requested\": %" PRIu64,
                 cap, limit, n);
            return finish(EXIT_HEAP_CAP, "heap_cap");
        }
        int rc = opt.pagecache ? write_pagecache(n) : alloc_anon(n);
        if (rc != 0)
            return finish(EXIT_RUNTIME, "error");
        g_allocated += n;
        g_chunks++;
        emit("chunk", "\"chunk\": %" PRIu64 ", \"deadline_ns\": %" PRId64, n,
             t0 + (int64_t)k * (interval_ns > 0 ? interval_ns : 0));
    }
    emit("max", "\"max\": %" PRIu64, opt.max);

    if (opt.hold_ms >= 0) {
        if (!sleep_until(clock_ns(CLOCK_MONOTONIC) + opt.hold_ms * 1000000LL))
            return finish(EXIT_OK, "signal");
        return finish(EXIT_OK, "hold_done");
    }
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    while (!g_stop_signal) {
        if (g_index == 0 && g_child_changed)
            reap_children();
        else
            sigsuspend(&old);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return finish(EXIT_OK, "signal");
}

/* ------------------------------------------------------------------ arguments */

static void usage(FILE *f) {
    fprintf(f,
            "usage: leak [--chunk=BYTES] [--interval-ms=MS] [--max=BYTES] [--start-delay-ms=MS]\n"
            "            [--hold-ms=MS] [--processes=N] [--touch=FRACTION] [--heap-cap-percent=P]\n"
            "            [--mode=anon|pagecache] [--file=PATH] [--keep-file] [--version]\n"
            "See workloads/README.md.\n");
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        return 0;
    *out = v;
    return 1;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

static int bad_arg(const char *name, const char *value, const char *why) {
    char msg[512], esc[1100];
    snprintf(msg, sizeof msg, "bad argument --%s=%s: %s", name, value ? value : "", why);
    json_escape(esc, sizeof esc, msg);
    emit("error", "\"message\": \"%s\"", esc);
    fprintf(stderr, "leak: %s\n", msg);
    usage(stderr);
    return EXIT_BAD_ARGS;
}

static int parse_args(int argc, char **argv) {
    enum { O_CHUNK = 1, O_INTERVAL, O_MAX, O_DELAY, O_HOLD, O_PROCS, O_TOUCH, O_CAP, O_MODE, O_FILE, O_KEEP,
           O_HELP, O_VERSION };
    static const struct option longopts[] = {
        {"chunk", required_argument, NULL, O_CHUNK},
        {"interval-ms", required_argument, NULL, O_INTERVAL},
        {"max", required_argument, NULL, O_MAX},
        {"start-delay-ms", required_argument, NULL, O_DELAY},
        {"hold-ms", required_argument, NULL, O_HOLD},
        {"processes", required_argument, NULL, O_PROCS},
        {"touch", required_argument, NULL, O_TOUCH},
        {"heap-cap-percent", required_argument, NULL, O_CAP},
        {"mode", required_argument, NULL, O_MODE},
        {"file", required_argument, NULL, O_FILE},
        {"keep-file", no_argument, NULL, O_KEEP},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        uint64_t u;
        double d;
        const char *name = c > 0 && c <= O_VERSION ? longopts[c - 1].name : "?";
        switch (c) {
        case O_CHUNK:
            if (!parse_u64(optarg, &u) || u == 0 || u > (1ULL << 40))
                return bad_arg(name, optarg, "need an integer number of bytes in 1..2^40");
            opt.chunk = u;
            break;
        case O_INTERVAL:
            if (!parse_double(optarg, &d) || d < 0 || d > 1e9)
                return bad_arg(name, optarg, "need milliseconds >= 0");
            opt.interval_ms = d;
            break;
        case O_MAX:
            if (!parse_u64(optarg, &u))
                return bad_arg(name, optarg, "need an integer number of bytes (0 = until killed)");
            opt.max = u;
            break;
        case O_DELAY:
            if (!parse_u64(optarg, &u) || u > (1ULL << 40))
                return bad_arg(name, optarg, "need integer milliseconds >= 0");
            opt.start_delay_ms = (int64_t)u;
            break;
        case O_HOLD:
            if (!parse_u64(optarg, &u) || u > (1ULL << 40))
                return bad_arg(name, optarg, "need integer milliseconds >= 0");
            opt.hold_ms = (int64_t)u;
            break;
        case O_PROCS:
            if (!parse_u64(optarg, &u) || u < 1 || u > MAX_PROCESSES)
                return bad_arg(name, optarg, "need an integer in 1..1024");
            opt.processes = (int)u;
            break;
        case O_TOUCH:
            if (!parse_double(optarg, &d) || d < 0 || d > 1)
                return bad_arg(name, optarg, "need a fraction in [0, 1]");
            opt.touch = d;
            break;
        case O_CAP:
            if (!parse_u64(optarg, &u) || u < 1 || u > 100)
                return bad_arg(name, optarg, "need an integer percentage in 1..100");
            opt.heap_cap_percent = (int)u;
            break;
        case O_MODE:
            if (strcmp(optarg, "anon") == 0)
                opt.pagecache = 0;
            else if (strcmp(optarg, "pagecache") == 0)
                opt.pagecache = 1;
            else
                return bad_arg(name, optarg, "need anon or pagecache");
            break;
        case O_FILE:
            if (*optarg == '\0')
                return bad_arg(name, optarg, "need a path");
            opt.file = optarg;
            break;
        case O_KEEP:
            opt.keep_file = 1;
            break;
        case O_HELP:
            usage(stdout);
            exit(EXIT_OK);
        case O_VERSION:
            printf("leak %s\n", LEAK_VERSION);
            exit(EXIT_OK);
        default: {
            const char *arg = (optind > 0 && optind <= argc) ? argv[optind - 1] : "?";
            char msg[512], esc[1100];
            snprintf(msg, sizeof msg, "unknown or malformed option %s", arg);
            json_escape(esc, sizeof esc, msg);
            emit("error", "\"message\": \"%s\"", esc);
            fprintf(stderr, "leak: %s\n", msg);
            usage(stderr);
            return EXIT_BAD_ARGS;
        }
        }
    }
    if (optind < argc) {
        char msg[512], esc[1100];
        snprintf(msg, sizeof msg, "unexpected argument %s", argv[optind]);
        json_escape(esc, sizeof esc, msg);
        emit("error", "\"message\": \"%s\"", esc);
        fprintf(stderr, "leak: %s\n", msg);
        return EXIT_BAD_ARGS;
    }
    return 0;
}

int main(int argc, char **argv) {
    g_page_size = sysconf(_SC_PAGESIZE);
    g_statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);

    int rc = parse_args(argc, argv);
    if (rc != 0)
        return rc;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    /* parent + (N-1) children, each leaking the same pattern: total = N x per-process */
    pid_t parent = getpid();
    for (int i = 1; i < opt.processes; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            emit_error("fork failed: %s", strerror(errno));
            stop_children(SIGTERM);
            return EXIT_RUNTIME;
        }
        if (pid == 0) {
            g_index = i;
            g_nchildren = 0;
            sa.sa_handler = SIG_DFL;
            sa.sa_flags = 0;
            sigaction(SIGCHLD, &sa, NULL);
            /* die with the parent (e.g. when the OOM killer picks it), never leak orphans */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(EXIT_OK);
            if (g_statm_fd >= 0)
                close(g_statm_fd);
            g_statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
            return run();
        }
        g_children[g_nchildren++] = pid;
    }
    return run();
}
