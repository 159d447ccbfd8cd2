/* endpoints: the daemon's listening sockets (see endpoints.h). */
#include "endpoints.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "carry.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "notify.h"

#define ENDPOINTS_BACKLOG 1024

/* One listening socket and whom it serves. */
struct endpoint {
	struct endpoint *next;
	struct endpoints *owner;
	struct listener *listener;
	struct gateway *gw;             /* a reference, replaced on reload */
	struct sockaddr_storage cfg_ss; /* the configured address it was bound for */
	socklen_t cfg_len;
	bool from_systemd;
	char stored[NOTIFY_FDNAME_MAX + 1]; /* its name in systemd's fd store, or "" */
};

struct endpoints {
	struct loop *loop;
	struct endpoint *list; /* in the configuration's order */
	endpoints_accept_fn *on_accept;
	void *arg;
	bool fdstore;        /* keep the listening sockets in systemd's fd store */
	unsigned stored_seq; /* names them */
};

struct endpoints *endpoints_create(struct loop *loop, endpoints_accept_fn *on_accept, void *arg,
				   struct errbuf *err)
{
	struct endpoints *e = calloc(1, sizeof(*e));

	if (e == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	e->loop = loop;
	e->on_accept = on_accept;
	e->arg = arg;
	return e;
}

static void endpoint_free(struct endpoint *ep)
{
	/* At a stop or restart the store keeps it: a restart finds it again and
	 * no connection is refused meanwhile (at a stop systemd closes it). */
	listener_free(ep->listener);
	gateway_unref(ep->gw);
	free(ep);
}

static void endpoint_free_list(struct endpoint *ep)
{
	while (ep != NULL) {
		struct endpoint *next = ep->next;

		endpoint_free(ep);
		ep = next;
	}
}

void endpoints_free(struct endpoints *e)
{
	if (e == NULL)
		return;
	endpoint_free_list(e->list);
	free(e);
}

static void endpoint_accept(struct listener *l, int fd, const struct sockaddr *peer,
			    socklen_t peerlen, void *arg)
{
	struct endpoint *ep = arg;

	(void)l;
	ep->owner->on_accept(ep->gw, fd, peer, peerlen, ep->owner->arg);
}

/* Lists keep the configuration's order, so logs and status read as written. */
static void endpoint_append(struct endpoint **list, struct endpoint *ep)
{
	while (*list != NULL)
		list = &(*list)->next;
	ep->next = NULL;
	*list = ep;
}

/* A listener on fd (which it takes over) serving gw, appended to list. */
static struct endpoint *endpoint_add(struct endpoints *e, struct endpoint **list, int fd,
				     struct gateway *gw, struct errbuf *err)
{
	struct endpoint *ep = calloc(1, sizeof(*ep));

	if (ep == NULL) {
		close(fd);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	ep->owner = e;
	ep->listener = listener_create(e->loop, fd, endpoint_accept, ep, err);
	if (ep->listener == NULL) {
		close(fd);
		free(ep);
		return NULL;
	}
	ep->gw = gateway_ref(gw);
	endpoint_append(list, ep);
	return ep;
}

static struct gateway *endpoints_gateway(struct gateway **gws, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(gws[i]->cfg->name, name) == 0)
			return gws[i];
	return NULL;
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t alen,
		      const struct sockaddr_storage *b, socklen_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/* The endpoint (not systemd's) bound for the configured address a. */
static struct endpoint *endpoints_find(struct endpoint *list, const struct config_addr *a)
{
	for (struct endpoint *ep = list; ep != NULL; ep = ep->next)
		if (!ep->from_systemd && same_addr(&ep->cfg_ss, ep->cfg_len, &a->ss, a->len))
			return ep;
	return NULL;
}

/* True if a socket systemd passed in is already bound to a. */
static bool endpoints_inherited(struct endpoint *list, const struct config_addr *a)
{
	for (struct endpoint *ep = list; ep != NULL; ep = ep->next) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (ep->from_systemd &&
		    getsockname(listener_fd(ep->listener), (struct sockaddr *)&ss, &sl) == 0 &&
		    same_addr(&ss, sl, &a->ss, a->len))
			return true;
	}
	return false;
}

static void endpoint_log_listening(const struct endpoint *ep)
{
	log_event(LOG_INFO, LOG_EV_LISTENING, "listening",
		  LOG_FIELDS({"SOCKGATE_GATEWAY", ep->gw->cfg->name},
			     {"SOCKGATE_LISTEN", listener_name(ep->listener)},
			     {"SOCKGATE_SOURCE", ep->from_systemd ? "systemd" : "config"}));
}

/* The new gateway an existing endpoint serves, or NULL if none does. */
static struct gateway *endpoint_new_gateway(const struct endpoint *ep, struct gateway **gws,
					    size_t n_gws)
{
	if (ep->from_systemd)
		return endpoints_gateway(gws, n_gws, ep->gw->cfg->name);
	for (size_t i = 0; i < n_gws; i++)
		for (size_t j = 0; j < gws[i]->cfg->n_listen; j++)
			if (same_addr(&ep->cfg_ss, ep->cfg_len, &gws[i]->cfg->listen[j].ss,
				      gws[i]->cfg->listen[j].len))
				return gws[i];
	return NULL;
}

/* Hands a configured listener to systemd's fd store under a name of its own
 * (a restart takes it back by address). */
static void endpoint_store(struct endpoints *e, struct endpoint *ep)
{
	int fd = listener_fd(ep->listener);

	if (!e->fdstore || ep->from_systemd)
		return;
	/* Unique across restarts (the pid), and short (see carry.h). */
	snprintf(ep->stored, sizeof(ep->stored), CARRY_LISTEN_PREFIX "%lx.%x", (long)getpid(),
		 e->stored_seq++);
	if (!notify_fdstore_add(ep->stored, &fd, 1)) {
		log_msg(LOG_WARNING,
			"cannot keep %s in systemd's fd store: a restart will refuse "
			"connections while it runs",
			listener_name(ep->listener));
		ep->stored[0] = '\0';
	}
}

void endpoints_forget_stored(struct endpoints *e)
{
	for (struct endpoint *ep = e->list; ep != NULL; ep = ep->next)
		if (ep->stored[0] != '\0') {
			(void)notify_fdstore_remove(ep->stored);
			ep->stored[0] = '\0';
		}
}

void endpoints_use_fdstore(struct endpoints *e)
{
	e->fdstore = true;
}

/* The gateway and configured address a listening socket from the fd store
 * serves now, by its bound address. */
static struct gateway *endpoints_stored_gateway(int fd, struct gateway **gws, size_t n_gws,
						const struct config_addr **addr)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return NULL;
	for (size_t i = 0; i < n_gws; i++)
		for (size_t j = 0; j < gws[i]->cfg->n_listen; j++)
			if (same_addr(&ss, sl, &gws[i]->cfg->listen[j].ss,
				      gws[i]->cfg->listen[j].len)) {
				*addr = &gws[i]->cfg->listen[j];
				return gws[i];
			}
	return NULL;
}

/* A listening socket the process before kept in the fd store: it serves its
 * address's gateway again, or goes (the configuration no longer has it). */
static int endpoints_take_stored(struct endpoints *e, const struct notify_fd *p,
				 struct gateway **gws, size_t n_gws, struct errbuf *err)
{
	const struct config_addr *addr = NULL;
	struct gateway *gw = endpoints_stored_gateway(p->fd, gws, n_gws, &addr);
	struct endpoint *ep;
	struct errbuf why;

	if (gw == NULL || net_check_tcp_listener(p->fd, &why) < 0) {
		log_msg(LOG_INFO,
			"dropping a listening socket kept by systemd (%s): no gateway "
			"listens there now",
			p->name);
		(void)notify_fdstore_remove(p->name);
		close(p->fd);
		return 0;
	}
	(void)net_set_nonblock(p->fd, 1);
	ep = endpoint_add(e, &e->list, p->fd, gw, err);
	if (ep == NULL)
		return -1;
	memcpy(&ep->cfg_ss, &addr->ss, addr->len);
	ep->cfg_len = addr->len;
	snprintf(ep->stored, sizeof(ep->stored), "%s", p->name);
	endpoint_log_listening(ep);
	return 0;
}

int endpoints_bind(struct endpoints *e, struct gateway **gws, size_t n_gws, struct errbuf *err)
{
	struct endpoint *fresh = NULL, *keep = NULL, **p;

	for (struct endpoint *ep = e->list; ep != NULL; ep = ep->next)
		if (ep->from_systemd && endpoints_gateway(gws, n_gws, ep->gw->cfg->name) == NULL)
			return errbuf_set(err,
					  "socket %s from systemd serves gateway \"%s\", which the "
					  "configuration no longer has",
					  listener_name(ep->listener), ep->gw->cfg->name);
	for (size_t i = 0; i < n_gws; i++) {
		const struct config_gateway *g = gws[i]->cfg;

		for (size_t j = 0; j < g->n_listen; j++) {
			const struct config_addr *a = &g->listen[j];
			struct endpoint *ep;
			int fd;

			if (endpoints_inherited(e->list, a) || endpoints_find(e->list, a))
				continue;
			fd = net_listen((const struct sockaddr *)&a->ss, a->len, ENDPOINTS_BACKLOG,
					err);
			if (fd < 0) {
				char why[ERRBUF_LEN];

				snprintf(why, sizeof(why), "%s", err->msg);
				errbuf_set(err, "gateway \"%s\": %s", g->name, why);
				goto fail;
			}
			ep = endpoint_add(e, &fresh, fd, gws[i], err);
			if (ep == NULL)
				goto fail;
			memcpy(&ep->cfg_ss, &a->ss, a->len);
			ep->cfg_len = a->len;
		}
	}

	/* Commit: re-point what stays, close what is no longer configured. */
	for (p = &e->list; *p != NULL;) {
		struct endpoint *ep = *p;
		struct gateway *gw = endpoint_new_gateway(ep, gws, n_gws);

		*p = ep->next;
		if (gw == NULL) {
			log_msg(LOG_INFO, "no longer listening on %s", listener_name(ep->listener));
			if (ep->stored[0] != '\0')
				(void)notify_fdstore_remove(ep->stored);
			endpoint_free(ep);
			continue;
		}
		gateway_unref(ep->gw);
		ep->gw = gateway_ref(gw);
		endpoint_append(&keep, ep);
	}
	while (fresh != NULL) {
		struct endpoint *ep = fresh;

		fresh = ep->next;
		endpoint_append(&keep, ep);
		endpoint_log_listening(ep);
		endpoint_store(e, ep);
	}
	e->list = keep;
	return 0;
fail:
	endpoint_free_list(fresh);
	return -1;
}

int endpoints_inherit(struct endpoints *e, struct gateway **gws, size_t n_gws,
		      const struct notify_fd *passed, size_t n, struct errbuf *err)
{
	int rc = 0, slot;
	bool client;

	for (size_t i = 0; i < n; i++) {
		int fd = passed[i].fd;
		const char *name = passed[i].name;
		struct gateway *gw = endpoints_gateway(gws, n_gws, name);
		struct endpoint *ep;
		struct errbuf why;

		/* A carried session's socket: the daemon's to take (daemon_resume). */
		if (carry_session_fd_name(name, &slot, &client))
			continue;
		if (rc == 0 &&
		    strncmp(name, CARRY_LISTEN_PREFIX, strlen(CARRY_LISTEN_PREFIX)) == 0) {
			rc = endpoints_take_stored(e, &passed[i], gws, n_gws, err);
			continue;
		}
		if (rc < 0 || gw == NULL) {
			if (rc == 0)
				rc = errbuf_set(
					err,
					"systemd passed a socket named \"%s\", but no gateway has "
					"that name (set FileDescriptorName= to a gateway's name)",
					name);
			close(fd);
			continue;
		}
		if (net_check_tcp_listener(fd, &why) < 0) {
			rc = errbuf_set(err, "socket %d from systemd for gateway \"%s\" is %s", fd,
					name, why.msg);
			close(fd);
			continue;
		}
		(void)net_set_nonblock(fd, 1);
		ep = endpoint_add(e, &e->list, fd, gw, err);
		if (ep == NULL) {
			rc = -1;
			continue;
		}
		ep->from_systemd = true;
		endpoint_log_listening(ep);
	}
	return rc;
}
