/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The little XML that object stores answer with (xml.c): S3's error bodies and listings, STS's
 * credentials. Not a parser: finds the text of an element by its tag name, which is all those
 * documents need (they have no attributes on the elements read, no CDATA, no nesting of a tag
 * inside itself).
 */
#ifndef WLIFT_SOURCE_XML_H
#define WLIFT_SOURCE_XML_H

#include <stddef.h>

/* The text of the first <tag>...</tag> in body[0, len) into buf (entities &amp; &lt; &gt;
 * &quot; &apos; and numeric ones decoded; control bytes dropped; cut to cap - 1 bytes).
 * Returns the offset just past the closing tag (> 0) when found, 0 when not (buf ""), or
 * -ENOSPC when the text did not fit (buf holds its start). Iterate over repeated elements
 * by calling again on body + offset. */
long wlift__xml_text(const char *body, size_t len, const char *tag, char *buf, size_t cap);

#endif
