/* The stb decoders' implementation, compiled once where the system's stb is header-only
 * (Debian's libstb-dev ships it compiled as libstb, which is used instead). */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_ONLY_PNG
#include <stb_image.h>
#include <stb_image_write.h>
