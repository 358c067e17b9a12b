/*
 * pause: a pod sandbox "pause" process for the kubelet memory harness.
 *
 * Sleeps until SIGTERM or SIGINT (then exits 0) and reaps every child it inherits,
 * so it can be PID 1 of a container or a pod sandbox. Built static.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef LEAK_VERSION
#define LEAK_VERSION "dev"
#endif

static volatile sig_atomic_t g_stop = 0;
static volatile sig_atomic_t g_child = 0;

static void on_stop(int sig) { g_stop = sig; }
static void on_child(int sig) { (void)sig; g_child = 1; }

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("pause %s\n", LEAK_VERSION);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: pause [--version]\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    while (!g_stop) {
        if (g_child) {
            g_child = 0;
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
        } else {
            sigsuspend(&old);
        }
    }
    return 0;
}
