# Writes the web page into a C source as bytes, at build time: cmake -DIN=index.html -DOUT=page.c -P embed.cmake
# (the page stays plain HTML/CSS/JS with no build step of its own; the binary needs no file beside it).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){24})" "\\1\n" body "${body}")
file(WRITE "${OUT}" "/* generated from server/web/index.html by server/web/embed.cmake: do not edit */\n"
     "const unsigned char td_srv_page_html[] = {\n${body}0x00};\n"
     "const unsigned long td_srv_page_html_len = ${bytes};\n")
