/* Times the AMX kernel on DeepSeek-V3 expert shapes, one thread and many (tools/gpu-host/amxprof.sh builds
 * it against variants of td_kern_amx.c); investigation only, not part of the build. */
#include "td_kern.h"
#include "td_randw.h"
#include "td_alloc.h"
#include "td_types.h"
#include "td_cpu_features.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef EMUL
extern const td_kernel td_kernels_amx_emul[];
void td_amx_pack_btiles_emul(const void *const *x, int cnt, int64_t kt0, int64_t kt1, uint8_t *dst);
#define TABLE td_kernels_amx_emul
#define PACK td_amx_pack_btiles_emul
#elif defined(VARIANT)
extern const td_kernel td_kernels_amx_v[];
void td_amx_pack_btiles_v(const void *const *x, int cnt, int64_t kt0, int64_t kt1, uint8_t *dst);
#define TABLE td_kernels_amx_v
#define PACK td_amx_pack_btiles_v
#else
#define TABLE td_kernels_amx
#define PACK td_amx_pack_btiles
#endif
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
typedef struct { const td_kernel *k; int64_t rows, cols, chunk; int n, nmat, mode; double ns; } job;
static void *runjob(void *arg)
{
    job *j = arg; const td_kernel *k = j->k; int64_t rows=j->rows, cols=j->cols, chunk=j->chunk; int n=j->n, nmat=j->nmat;
    size_t rb = td_type_row_bytes(k->type, cols);
    uint8_t **d = malloc(nmat*sizeof *d);
    for (int i=0;i<nmat;i++){ d[i]=td_malloc_aligned(rb*rows,64); td_randw_fill(k->type,d[i],rb*rows,i+1,0);}
    size_t arow = td_act_row_bytes(k->act, cols);
    uint8_t *xa = td_malloc_aligned(arow*n,64); const void **xp = malloc(n*sizeof*xp);
    float *x = malloc(cols*4); for(int i=0;i<cols;i++) x[i]=(float)rand()/RAND_MAX-0.5f;
    for(int t=0;t<n;t++){ td_act_prepare(k->act, TD_ISA_AVX512, x, cols, xa+t*arow); xp[t]=xa+t*arow;}
    size_t sb = td_kern_scratch_bytes(cols); void *scr = td_malloc_aligned(sb,64);
    float *y = malloc(sizeof(float)*n*chunk);
    int64_t nkt=(cols+31)/32; uint8_t *bt = td_malloc_aligned(nkt*1024*((n+15)/16),64);
    for (int g=0; g<(n+15)/16; g++) PACK(xp+16*g, n-16*g<16?n-16*g:16, 0, nkt, bt+g*nkt*1024);
    double best=1e9;
    for (int rep=0;rep<3;rep++){
      double t0=now();
      for (int i=0;i<nmat;i++){ td_matrix m={.type=k->type,.rows=rows,.cols=cols,.data=d[i],.row_bytes=rb,.name="w"};
        for (int64_t r=0;r<rows;r+=chunk){ td_kern_ctx c={.scratch=scr,.scratch_bytes=sb,.same_acts=j->mode==1 && r>0,.btiles=j->mode==2?bt:NULL}; k->fn(&c,&m,r,r+chunk,xp,n,y,chunk);} }
      double t=now()-t0; if(t<best)best=t;
    }
    j->ns = best/((double)rows*cols*nmat)*256*1e9;
    return NULL;
}
static void run(const char *name, int64_t rows, int64_t cols, int64_t chunk, int n, int nmat, int mode, int threads)
{
    const td_kernel *k = NULL;
    for (const td_kernel *q = TABLE; q->fn; q++) if (!strcmp(q->name, name)) k = q;
    job js[64]; pthread_t th[64];
    for (int i=0;i<threads;i++){ js[i]=(job){k,rows,cols,chunk,n,nmat,mode,0}; pthread_create(&th[i],NULL,runjob,&js[i]); }
    double s=0; for (int i=0;i<threads;i++){ pthread_join(th[i],NULL); s+=js[i].ns; }
    s/=threads;
    printf("%-10s %5lldx%-5lld chunk %4lld n=%2d mode=%d threads=%2d: %6.1f ns/256 weights/thread, %.3f TFLOP/s all threads\n", name,(long long)rows,(long long)cols,(long long)chunk,n,mode,threads,s, 2.0*256*n/s*1e-3*threads);
}
#ifdef VARIANT
double td_amx_bf16_loop_v(int64_t iters);
static void *peakjob(void *arg){ double t0=now(); double f=td_amx_bf16_loop_v(2000000); *(double*)arg = f/(now()-t0); return NULL; }
static void peak(int threads){ pthread_t th[64]; double r[64]; for(int i=0;i<threads;i++) pthread_create(&th[i],NULL,peakjob,&r[i]);
  double s=0; for(int i=0;i<threads;i++){ pthread_join(th[i],NULL); s+=r[i]; }
  printf("AMX bf16 tile loop, %2d threads: %.2f TFLOP/s (%.3f per thread)\n", threads, s*1e-12, s*1e-12/threads); }
#endif
int main(int argc,char**argv){
  int th = argc>1?atoi(argv[1]):1;
#ifndef EMUL
  if (!td_cpu_has_isa(TD_ISA_AMX)) { printf("no AMX\n"); return 1; } /* asks the kernel for the tile state */
#endif
  const char *names[] = {"q4_K/amx", "bf16/amx", "q8_0/amx"};
  int ntypes = argc>2?atoi(argv[2]):3;
#ifdef VARIANT
  peak(th);
#endif
  for (int i=0;i<ntypes;i++){
    run(names[i],2048,7168,512,64,4,0,th);
    run(names[i],7168,2048,64,64,4,2,th);
    run(names[i],2048,7168,512,16,4,0,th);
  }
}
