/* execload: a steady exec rate for the evented-table benchmark, the load a
 * busy host puts on the process collector.
 *
 *   execload RATE SECONDS EVERY CMD [ARG...]
 *
 * Starts RATE processes per second for SECONDS, on an absolute schedule (a
 * late start is caught up, never skipped): each is /bin/true, except every
 * EVERY-th, which runs CMD with its arguments (say a dbus-send that
 * activates a service), its output to /dev/null. Children are reaped as they exit. Prints one JSON
 * line at the end: processes started, CMD runs, seconds taken, and the
 * largest lag behind the schedule in ms.
 *
 * Built by scripts/bench.sh --events with the system C compiler; never
 * installed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void reap(int block) {
    while (waitpid(-1, NULL, block ? 0 : WNOHANG) > 0) {}
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: execload RATE SECONDS EVERY CMD [ARG...]\n");
        return 2;
    }
    long rate = strtol(argv[1], NULL, 10);
    double seconds = strtod(argv[2], NULL);
    long every = strtol(argv[3], NULL, 10);
    char **cmd = argv + 4;
    if (rate <= 0 || seconds <= 0 || every <= 0) return 2;
    char *true_argv[] = {"/bin/true", NULL};
    long total = (long)(rate * seconds), started = 0, cmd_runs = 0;
    double start = now(), max_lag = 0;
    pid_t parent = getpid();
    for (long i = 0; i < total; i++) {
        double due = start + (double)i / (double)rate;
        double t = now();
        if (t < due) {
            struct timespec d = {(time_t)(due - t), (long)((due - t - (time_t)(due - t)) * 1e9)};
            while (nanosleep(&d, &d) < 0 && errno == EINTR) {}
        } else if (t - due > max_lag) {
            max_lag = t - due;
        }
        int is_cmd = (i + 1) % every == 0;
        pid_t p = fork();
        if (p < 0) {
            perror("fork");
            reap(0);
            continue;
        }
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(0);
            if (is_cmd) {
                int null = open("/dev/null", O_WRONLY);
                if (null >= 0) {
                    dup2(null, 1);
                    dup2(null, 2);
                }
                execvp(cmd[0], cmd);
            } else {
                execv(true_argv[0], true_argv);
            }
            _exit(127);
        }
        started++;
        cmd_runs += is_cmd;
        reap(0);
    }
    reap(1);
    printf("{\"started\": %ld, \"cmd_runs\": %ld, \"seconds\": %.3f, \"max_lag_ms\": %.1f}\n",
           started, cmd_runs, now() - start, max_lag * 1e3);
    return 0;
}
