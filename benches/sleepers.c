/* sleepers: fork N children that pause() until killed, so a benchmark has a
 * host with N more processes without paying for N exec's.
 *
 *   sleepers N   prints "ready <N>" once all children exist, then waits for
 *                stdin to close (or SIGTERM/SIGINT) and kills them all.
 *
 * Each child asks the kernel to SIGKILL it when the parent dies
 * (PR_SET_PDEATHSIG), so nothing outlives a crashed or killed bench. Built by
 * scripts/bench.sh with the system C compiler; never installed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t *kids;
static long nkids;

static void reap_all(void) {
    for (long i = 0; i < nkids; i++) kill(kids[i], SIGKILL);
    while (waitpid(-1, NULL, 0) > 0) {}
}

static void on_signal(int sig) { (void)sig; reap_all(); _exit(0); }

int main(int argc, char **argv) {
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 0;
    pid_t parent = getpid();
    kids = calloc((size_t)(n > 0 ? n : 1), sizeof *kids);
    if (!kids) return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGHUP, on_signal);
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) { perror("fork"); reap_all(); return 1; }
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(0);
            for (;;) pause();
        }
        kids[nkids++] = p;
    }
    printf("ready %ld\n", nkids);
    fflush(stdout);
    char buf[64];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {}
    reap_all();
    return 0;
}
