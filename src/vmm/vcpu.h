/* vCPU threads: the KVM_RUN loop and exit dispatch. */
#ifndef GLIDE_VMM_VCPU_H
#define GLIDE_VMM_VCPU_H
#include <signal.h>
#define VCPU_KICK_SIGNAL SIGUSR1
void *vcpu_thread(void *arg);
/* The handler of VCPU_KICK_SIGNAL (kicks by vm_kick_vcpu and the vCPU's
 * own SDPS slice timer): makes the thread's next KVM_RUN return at once. */
void vcpu_kick_handler(int sig);
#endif
