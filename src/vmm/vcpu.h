/* vCPU threads: the KVM_RUN loop and exit dispatch. */
#ifndef GLIDE_VMM_VCPU_H
#define GLIDE_VMM_VCPU_H
#include <signal.h>
#define VCPU_KICK_SIGNAL SIGUSR1
void *vcpu_thread(void *arg);
#endif
