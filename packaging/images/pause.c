/* tug's pause: the process that holds a pod's namespaces. It sleeps until told to stop, reaps the
 * zombies of processes that end up as its children (when the pod shares its PID namespace), and exits
 * 0 on SIGINT or SIGTERM. Built statically by build.sh. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (getpid() != 1) {
        /* Outside a container there is nothing to hold; still behave, but say so. */
        (void)write(2, "pause: not running as pid 1\n", 28);
    }
    if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 ||
        sigaction(SIGCHLD, &on_child, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
