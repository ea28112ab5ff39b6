/* rainbow: rainbow deploys of chatd (see deployer/cli.h, docs/rainbow.md). */
#include "cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
