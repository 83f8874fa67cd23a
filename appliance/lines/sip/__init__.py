"""SIP line: an asyncio SIP user agent (RFC 3261), SDP offer/answer (RFC 3264), RTP/RTCP (RFC 3550)."""
