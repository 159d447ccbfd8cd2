/* fault: injected faults for tests (see fault.h). */
#include "fault.h"

#include <pthread.h>

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fault_cond = PTHREAD_COND_INITIALIZER;
static unsigned long fault_lifts;

bool fault_enabled(void)
{
#ifdef SOCKGATE_FAULTS
	return true;
#else
	return false;
#endif
}

void fault_block(void)
{
	unsigned long lifts;

	pthread_mutex_lock(&fault_lock);
	lifts = fault_lifts;
	while (fault_lifts == lifts)
		pthread_cond_wait(&fault_cond, &fault_lock);
	pthread_mutex_unlock(&fault_lock);
}

void fault_lift(void)
{
	pthread_mutex_lock(&fault_lock);
	fault_lifts++;
	pthread_cond_broadcast(&fault_cond);
	pthread_mutex_unlock(&fault_lock);
}
