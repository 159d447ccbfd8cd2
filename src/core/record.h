/* record: session recordings in the asciicast v2 format (asciinema), written by
 * one thread of the daemon's so that relaying never waits for the disk: a slow
 * or full disk loses recording, never relayed bytes. Caps per session and per
 * directory; the login itself is never recorded (the caller opens after it). */
#ifndef SOCKGATE_RECORD_H
#define SOCKGATE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "errbuf.h"

/* The file, one JSON value per line (https://docs.asciinema.org/manual/asciicast/v2/):
 *
 *   {"version": 2, "width": 80, "height": 24, "timestamp": STARTED, "title": "USER@GATEWAY
 *    from CLIENT to UPSTREAM", "sockgate": {"session": ID, "gateway": G, "user": U or null,
 *    "client": C, "upstream": UP or null}}
 *   [0.412, "o", "login banner\r\n"]      bytes upstream -> client (what the client saw)
 *   [1.873, "i", "ls\r\n"]                bytes client -> upstream
 *   [2.001, "m", "bytes dropped: 4096"]   markers (see below)
 *
 * The terminal size is unknown to a TCP gateway: 80x24 is what asciinema plays
 * in. asciinema ignores the "sockgate" key; there is no "env" (the gateway
 * knows no TERM). Times are seconds since recording_open() with millisecond
 * precision, non-decreasing.
 *
 * Data strings: valid UTF-8 passes through as it is; ", \ and \b \f \n \r \t
 * get their short escapes; other control bytes, DEL, and every byte that is not
 * part of valid UTF-8 (RFC 3629: no overlongs, surrogates or code points above
 * U+10FFFF) become \u00XX of the byte. So every line is valid JSON, and
 * `asciinema cat` prints exactly the bytes of a text session. To get the exact
 * bytes of a binary session back, read each \u00XX escape as the byte XX and
 * each literal character as its UTF-8 bytes; a JSON parser alone cannot tell an
 * escaped byte 0xE9 from a valid "é" (both are U+00E9). A chunk that ends
 * inside a UTF-8 sequence keeps its last 1-3 bytes back for the next chunk of
 * the same direction, so a character split by the relay stays whole; bytes
 * held back when the session ends (or the recording stops) are written escaped.
 *
 * Markers ("m" events):
 *   "bytes dropped: N"                      the queue was full (the writer was behind)
 *   "recording stopped: size cap"           the file reached max_bytes
 *   "recording stopped: directory cap"      nothing more could be removed to stay
 *                                           under max_total_bytes
 *   "session closed: REASON"                the last line of a recording that did not fail;
 *   "session closed (N bytes not recorded after the stop): REASON"    the same after a stop
 * A chunk that passes a cap is cut at a character boundary so that the file
 * ends as near the cap as it can.
 *
 * Files: DIRECTORY/YYYYMMDDTHHMMSSZ-SESSIONID.cast (UTC start time), created
 * with O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC and mode 0600; an existing file of
 * that name is never replaced (that recording fails instead). A file never
 * exceeds max_bytes: data stops 512 bytes early, which leaves room for the two
 * final markers. The directory's *.cast files (scanned once, when the recorder
 * first writes there; again if a file it meant to remove has gone) stay under
 * max_total_bytes in total, counting 512 bytes for each open recording's final
 * markers: before a new file and before a write that would pass the cap, the
 * closed recordings are removed, oldest modification first; open ones never
 * are. A directory shared by gateways takes the max_total_bytes of the latest
 * recording_open(). */

/* The daemon's recorder: one writer thread, and the queue of chunks it has to
 * write, which holds at most queue_bytes of data (chunk bytes plus a small
 * header each); the queue is shared by all sessions of all workers. The thread
 * blocks every signal. Returns NULL with err set if the thread cannot start. */
struct recorder;
struct recorder *recorder_create(size_t queue_bytes, struct errbuf *err);

/* Waits until the writer has written everything queued before the call
 * (opens, data, closes). For tests and orderly shutdown; never on a loop. */
void recorder_flush(struct recorder *r);

/* Writes what is queued, stops the thread, frees r. Every recording must be
 * closed first (a recording still open has its file closed without a final
 * marker, and its struct is leaked rather than freed under its owner). */
void recorder_free(struct recorder *r);

/* One session's recording. Owned by the caller until recording_close(); used
 * only on the caller's thread (one worker's loop). */
struct recording;

/* Starts recording a session, on the caller's loop, without touching the disk
 * beyond one stat() of directory and an access check (kernel caches, no
 * writes): the file is created and the header written by the writer thread.
 * directory must exist and be writable (the unit's StateDirectory= makes it);
 * otherwise NULL, with err saying which and why, and the session goes on
 * unrecorded. session_id becomes part of the file name (bytes other than
 * [A-Za-z0-9._-] are replaced by '_'); user and upstream may be NULL. started
 * is the wall clock (the header's timestamp and the name); now_ms is the
 * caller's monotonic clock (loop_now_ms()), the zero of the events' times.
 * A failure after this (the file exists, ENOSPC, an I/O error) is the writer's:
 * it logs it once (LOG_ERR, with SOCKGATE_SESSION and SOCKGATE_RECORDING) and
 * recording_state() turns RECORDING_FAILED. */
struct recording *recording_open(struct recorder *r, const char *directory, uint64_t max_bytes,
				 uint64_t max_total_bytes, const char *session_id,
				 const char *gateway, const char *user, const char *client_addr,
				 const char *upstream, time_t started, uint64_t now_ms,
				 struct errbuf *err);

/* The path the recording is written to (DIRECTORY/NAME.cast), for the log. */
const char *recording_path(const struct recording *rec);

/* A chunk relayed at now_ms: from_client for client -> upstream ("i"),
 * otherwise upstream -> client ("o"). Copies buf into the queue (one malloc,
 * one memcpy, one short lock); never blocks on the writer. When the queue is
 * full the chunk is dropped and counted (recording_dropped()), and the file
 * gets a "bytes dropped: N" marker where the gap is. Once the recording has
 * stopped (cap) or failed, chunks are only counted. */
void recording_data(struct recording *rec, bool from_client, const void *buf, size_t len,
		    uint64_t now_ms);

/* Bytes this recording lost to a full queue so far; exact on the caller's
 * thread. Non-zero means the disk is too slow for the traffic: log it once. */
uint64_t recording_dropped(const struct recording *rec);

enum recording_state {
	RECORDING_ACTIVE = 0, /* being written (or about to be) */
	RECORDING_STOPPED,    /* a cap ended it, with its marker: as configured */
	RECORDING_FAILED,     /* the writer could not create or write it (logged) */
};

/* What the writer last made of the recording; it may lag behind. */
enum recording_state recording_state(const struct recording *rec);

/* The session ended at now_ms, for reason (one line, kept short: the first 160
 * bytes). The writer writes what is queued, then the final marker, and closes
 * the file; rec is freed by the recorder and must not be used after this. */
void recording_close(struct recording *rec, const char *reason, uint64_t now_ms);

#endif
