/*
 * The Makefile makes this object depend on the files included here, and
 * runs the assembler from the top of the tree (the paths are relative).
 */
#include "webassets.h"

__asm__(".pushsection .rodata\n"
	".global web_dashboard_html\n"
	".type web_dashboard_html, @object\n"
	"web_dashboard_html:\n"
	".incbin \"deployer/web/dashboard.html\"\n"
	".byte 0\n"
	".size web_dashboard_html, . - web_dashboard_html\n"
	".global web_chat_html\n"
	".type web_chat_html, @object\n"
	"web_chat_html:\n"
	".incbin \"deployer/web/chat.html\"\n"
	".byte 0\n"
	".size web_chat_html, . - web_chat_html\n"
	".popsection\n");
