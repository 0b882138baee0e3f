/* p11cert: text from a token, a certificate or a server on a terminal.
 * Labels, subjects and server messages are chosen by others: a raw ESC
 * sequence could rewrite the screen or the title, a U+202E (right-to-left
 * override) could reverse what follows.  Everything outside printable
 * ASCII is shown as \xHH, as `show` does for names (src/lib/show.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SAFE_SLOTS 8
#define SAFE_MAX 1024 /* bytes of output per string, "..." when cut */

size_t cli_escape(const char *s, char *out, size_t size)
{
	static const char hexd[] = "0123456789abcdef";
	size_t o = 0;

	if (size == 0)
		return 0;
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		size_t need = (ch >= 0x20 && ch <= 0x7e) ? 1 : 4;

		if (o + need + 1 > size) {
			if (size >= 4) {
				o = o + 4 > size ? size - 4 : o;
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (need == 1) {
			out[o++] = (char)ch;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hexd[ch >> 4];
			out[o++] = hexd[ch & 0x0f];
		}
	}
	out[o] = '\0';
	return o;
}

const char *cli_safe(const char *s)
{
	/* a few at once in one printf; the CLI prints from one thread */
	static char slots[SAFE_SLOTS][SAFE_MAX];
	static unsigned next;
	char *b = slots[next++ % SAFE_SLOTS];

	if (s == NULL)
		return "";
	cli_escape(s, b, SAFE_MAX);
	return b;
}
