"""A stdio MCP server written with the Python MCP SDK 2.x (`MCPServer`, the
decorator API once called FastMCP), for the `asyncmcp serve` tests.

Run: python fastmcp_server.py   (speaks MCP on stdin/stdout)

Tools:
    add(a, b)    -> the sum, as text ("5" for 2 and 3)
    shout(text)  -> the text in capitals with "!" appended
"""

from mcp.server.mcpserver import MCPServer

app = MCPServer("asyncmcp-serve-fastmcp")


@app.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@app.tool()
def shout(text: str) -> str:
    """Return the text in capitals, with an exclamation mark."""
    return text.upper() + "!"


if __name__ == "__main__":
    app.run()
